"""The gated delta rule: the math of GatedDeltaNet, without parameters.

Layout, kept everywhere in this module (the same as flash-linear-attention):

    q, k:   [B, T, H, K]     (k expected L2-normalised along K)
    v:      [B, T, H, V]
    g:      [B, T, H]        log of the decay alpha_t (g <= 0)
    beta:   [B, T, H]        write strength
    state:  [B, H, K, V]     the associative memory S (transposed w.r.t. the paper's d_v x d_k)

The rule every function here computes (Gated DeltaNet form, decay applied before the read):

    S_t = alpha_t S_{t-1} + k_t u_t^T,   u_t = beta_t (v_t - alpha_t S_{t-1}^T k_t)
    o_t = S_t^T (scale * q_t)

The Kairos paper writes the read without the decay, ``v_old = S_{t-1} k_t``; that rule is the same
op with ``beta' = beta / alpha`` and ``v' = alpha v`` (see ``kairos_to_gdn_inputs``), so one kernel
serves both and the CUDA kernels of flash-linear-attention can run either.

Three forms with one meaning:
- ``gated_delta_rule_naive``: one token at a time, written as the equation. The reference.
- ``gated_delta_rule_recurrent``: the same loop, vectorised over batch and heads; the streaming step
  (one token or one frame of tokens).
- ``gated_delta_rule_chunked``: the chunked parallel form for training, O(T), with the WY/UT
  transform done by a triangular solve per chunk.
``gated_delta_rule`` dispatches between them and to flash-linear-attention's Triton kernels on CUDA.
"""
from __future__ import annotations

import functools
import logging
from typing import Literal, Optional, Tuple

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "fla"]


def check_gdn_inputs(q, k, v, g, beta, state) -> Tuple[int, int, int, int, int]:
    """Validate shapes; return (B, T, H, K, V). Errors name the expected layout."""
    if q.dim() != 4:
        raise ValueError(f"q must be [B, T, H, K], got a {q.dim()}-d tensor of shape {tuple(q.shape)}")
    B, T, H, K = q.shape
    if k.shape != q.shape:
        raise ValueError(f"k must match q [B, T, H, K] = {tuple(q.shape)}, got {tuple(k.shape)}")
    if v.dim() != 4 or v.shape[:3] != (B, T, H):
        raise ValueError(f"v must be [B, T, H, V] with B, T, H = {(B, T, H)}, got {tuple(v.shape)}")
    V = v.shape[-1]
    for name, x in (("g", g), ("beta", beta)):
        if x.shape != (B, T, H):
            raise ValueError(f"{name} must be [B, T, H] = {(B, T, H)}, got {tuple(x.shape)}")
    if state is not None and state.shape != (B, H, K, V):
        raise ValueError(
            f"state must be [B, H, K, V] = {(B, H, K, V)}, got {tuple(state.shape)}; "
            "was it made by a layer with another head count or head size?")
    return B, T, H, K, V


def kairos_to_gdn_inputs(v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor):
    """Map the paper's rule onto the Gated DeltaNet op.

    Paper: S_t = a S + b (v - S k) k^T = S (a I - b k k^T) + b v k^T.
    GDN:   S_t = a S + b' (v' - a S k) k^T = S (a I - a b' k k^T) + b' v' k^T.
    Equal for b' = b / a and v' = a v.   v: [B, T, H, V], g = log a, beta = b: [B, T, H].
    """
    alpha = g.exp()
    return v * alpha.unsqueeze(-1), beta / alpha


def gated_delta_rule_naive(q, k, v, g, beta, scale=None, initial_state=None):
    """Reference: a Python loop over tokens and batch-heads, written as the equation.

    Returns (o [B, T, H, V], final_state [B, H, K, V]). Slow; for tests only.
    """
    B, T, H, K, V = check_gdn_inputs(q, k, v, g, beta, initial_state)
    scale = K ** -0.5 if scale is None else scale
    o = q.new_zeros(B, T, H, V, dtype=v.dtype)
    S = v.new_zeros(B, H, K, V) if initial_state is None else initial_state.clone()
    for b in range(B):
        for h in range(H):
            s = S[b, h]
            for t in range(T):
                alpha = torch.exp(g[b, t, h])
                kt, vt, qt = k[b, t, h], v[b, t, h], q[b, t, h] * scale
                v_old = alpha * (s.T @ kt)
                u = beta[b, t, h] * (vt - v_old)
                s = alpha * s + torch.outer(kt, u)
                o[b, t, h] = s.T @ qt
            S[b, h] = s
    return o, S


def gated_delta_rule_recurrent(q, k, v, g, beta, scale=None, initial_state=None):
    """Token-by-token recurrence, vectorised over batch and heads: the streaming step.

    Cost O(T K V) per head; use it for one token or one frame of tokens at a time.
    Returns (o [B, T, H, V], final_state [B, H, K, V]).
    """
    B, T, H, K, V = check_gdn_inputs(q, k, v, g, beta, initial_state)
    scale = K ** -0.5 if scale is None else scale
    S = v.new_zeros(B, H, K, V) if initial_state is None else initial_state
    alpha = g.exp()
    outs = []
    for t in range(T):
        a = alpha[:, t, :, None, None]                     # [B, H, 1, 1]
        kt, vt = k[:, t], v[:, t]                          # [B, H, K], [B, H, V]
        S = a * S                                          # decay first (GDN form)
        u = beta[:, t, :, None] * (vt - torch.einsum("bhkv,bhk->bhv", S, kt))
        S = S + kt.unsqueeze(-1) * u.unsqueeze(-2)
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t] * scale))
    return torch.stack(outs, dim=1), S


def unit_lower_solve_doubling(L: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve L X = rhs for unit lower-triangular L [..., C, C] without a triangular-solve op.

    L = I + A with A strictly lower, so A is nilpotent (A^C = 0) and
    L^-1 = (I - A)(I + A^2)(I + A^4)...(I + A^(2^m)) with 2^(m+1) >= C: ceil(log2 C) products.
    Matrix products only, so it exports to ONNX (which has no triangular solve) and to TensorRT.
    ``torch.linalg.solve_triangular`` is the reference it is tested against."""
    C = L.shape[-1]
    eye = torch.eye(C, dtype=L.dtype, device=L.device)
    A = L - eye
    inv = eye - A
    P = A @ A
    span = 2
    while span < C:
        inv = inv + inv @ P
        P = P @ P
        span *= 2
    return inv @ rhs


def gated_delta_rule_chunked(q, k, v, g, beta, scale=None, initial_state=None, chunk_size: int = 64,
                             solve: str = "triangular"):
    """Chunked parallel form (training), O(T * chunk_size) work, sequential only across chunks.

    Within a chunk of C tokens with gamma_i = prod_{m<=i} alpha_m and the start state S0,
    the updates u_i solve the unit lower-triangular system (the UT transform of WY), with
    ``torch.linalg.solve_triangular`` (solve='triangular') or matrix products only (solve='doubling',
    for exported graphs; see unit_lower_solve_doubling):

        (I + A) U = diag(beta) V - diag(beta * gamma) K S0,  A_ij = beta_i (k_i . k_j) gamma_i/gamma_j, j < i

    then O = diag(gamma) Q S0 + (Q K^T * Gamma_incl) U and S_C = gamma_C S0 + (K * gamma_C/gamma)^T U.
    Returns (o [B, T, H, V], final_state [B, H, K, V]).
    """
    B, T, H, K, V = check_gdn_inputs(q, k, v, g, beta, initial_state)
    scale = K ** -0.5 if scale is None else scale
    C = chunk_size
    pad = (-T) % C
    # [B, T, H, D] -> [B, H, n, C, D]; padded tokens have k = 0, beta = 0, g = 0: they change nothing.
    def chunks(x):
        x = x.transpose(1, 2)
        if pad:
            x = F.pad(x, (0, 0, 0, pad) if x.dim() == 4 else (0, pad))
        return x.reshape(B, H, -1, C, *x.shape[3:])
    qc, kc, vc = chunks(q * scale), chunks(k), chunks(v)
    gc, bc = chunks(g), chunks(beta)                       # [B, H, n, C]
    G = gc.cumsum(-1)                                      # log gamma within each chunk
    diff = G.unsqueeze(-1) - G.unsqueeze(-2)               # [.., C, C]: log(gamma_i / gamma_j)
    incl = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    strict = torch.ones(C, C, dtype=torch.bool, device=q.device).tril(-1)
    decay_incl = torch.where(incl, diff, -torch.inf).exp()  # 0 above the diagonal, no overflow
    kk = kc @ kc.transpose(-1, -2)
    A = torch.where(strict, bc.unsqueeze(-1) * kk * decay_incl, 0.0)
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    rhs = torch.cat([bc.unsqueeze(-1) * vc, (bc * G.exp()).unsqueeze(-1) * kc], dim=-1)
    if solve == "doubling":
        sol = unit_lower_solve_doubling(eye + A, rhs)
    elif solve == "triangular":
        sol = torch.linalg.solve_triangular(eye + A, rhs, upper=False, unitriangular=True)
    else:
        raise ValueError(f"solve must be 'triangular' or 'doubling', got {solve!r}")
    W_v, W_k = sol[..., :V], sol[..., V:]                  # U = W_v - W_k S0
    qk = (qc @ kc.transpose(-1, -2)) * decay_incl          # [B, H, n, C, C]
    q_decayed = qc * G.exp().unsqueeze(-1)
    k_to_end = kc * (G[..., -1:] - G).exp().unsqueeze(-1)
    S = v.new_zeros(B, H, K, V) if initial_state is None else initial_state
    outs = []
    for i in range(qc.shape[2]):
        U = W_v[:, :, i] - W_k[:, :, i] @ S
        outs.append(q_decayed[:, :, i] @ S + qk[:, :, i] @ U)
        S = G[:, :, i, -1, None, None].exp() * S + k_to_end[:, :, i].transpose(-1, -2) @ U
    o = torch.stack(outs, dim=2).reshape(B, H, -1, V)[:, :, :T]
    return o.transpose(1, 2), S


@functools.lru_cache(maxsize=None)
def _fla_ops():
    try:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule
    except Exception as e:  # ImportError, or triton failing to find a driver
        return None, repr(e)
    return (chunk_gated_delta_rule, fused_recurrent_gated_delta_rule), None


def fla_available() -> Tuple[bool, str]:
    """(True, '') when flash-linear-attention's Triton kernels can run here, else (False, why)."""
    if not torch.cuda.is_available():
        return False, "CUDA is not available (fla's Triton kernels need a CUDA GPU)"
    ops, err = _fla_ops()
    if ops is None:
        return False, f"flash-linear-attention could not be imported: {err}"
    return True, ""


@functools.lru_cache(maxsize=None)
def fla_backward_available() -> Tuple[bool, str]:
    """(True, '') when fla's chunk kernel can also run its backward pass here. fla 0.6 refuses the
    gated backward on Hopper GPUs with Triton >= 3.4, < 3.7.1 (wrong results upstream, fla #640) unless
    tilelang is installed; training then uses the pure-torch chunked form (autograd) instead."""
    try:
        import importlib.util
        from fla.utils import IS_NVIDIA_HOPPER, TRITON_ABOVE_3_4_0, TRITON_ABOVE_3_7_1
    except Exception:   # a flag moved in another fla release: nothing to work around there
        return True, ""
    if IS_NVIDIA_HOPPER and TRITON_ABOVE_3_4_0 and not TRITON_ABOVE_3_7_1 \
            and importlib.util.find_spec("tilelang") is None:
        import triton
        return False, (f"fla's gated backward is disabled on Hopper with Triton {triton.__version__} "
                       "(>= 3.4, < 3.7.1; fla #640): install Triton >= 3.7.1 or tilelang")
    return True, ""


@functools.lru_cache(maxsize=None)
def _log_once(msg: str) -> None:
    log.info(msg)


def gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, backend: Backend = "auto",
                     chunk_size: int = 64):
    """Run the gated delta rule with the best form for the device and length.

    backend: 'auto' uses flash-linear-attention on CUDA tensors and the pure-torch forms otherwise
    (logged once); 'fla' demands the Triton kernels and fails loudly without them; 'torch' forces the
    pure-torch forms: the recurrent form for a single token, the chunked form otherwise.
    Returns (o [B, T, H, V], final_state [B, H, K, V]).
    """
    B, T, H, K, V = check_gdn_inputs(q, k, v, g, beta, initial_state)
    use_fla = False
    if backend == "fla" or (backend == "auto" and q.is_cuda):
        ok, why = fla_available()
        if backend == "fla" and not ok:
            raise RuntimeError(f"GDN backend 'fla' was requested but {why}. Use backend='torch'.")
        use_fla = ok and q.is_cuda
        if backend == "fla" and not q.is_cuda:
            raise RuntimeError("GDN backend 'fla' needs CUDA tensors; got tensors on "
                               f"{q.device}. Move the model to CUDA or use backend='torch'.")
    elif backend not in ("auto", "torch", "fla"):
        raise ValueError(f"unknown GDN backend {backend!r}; expected 'auto', 'torch' or 'fla'")
    if use_fla and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, g, beta)):
        ok, why = fla_backward_available()
        if not ok:
            if backend == "fla":
                raise RuntimeError(f"GDN backend 'fla' cannot train here: {why}. Use backend='auto' or 'torch'.")
            _log_once(f"GatedDeltaNet trains with its pure-torch chunked form on {q.device}: {why}")
            use_fla = False
    if use_fla:
        (chunk_fn, recurrent_fn), _ = _fla_ops()
        fn = recurrent_fn if T <= 64 else chunk_fn
        o, S = fn(q, k, v, g=g, beta=beta, scale=scale, initial_state=initial_state,
                  output_final_state=True)
        return o, S
    if torch.onnx.is_in_onnx_export():   # graph export: no Python-side state, no triangular-solve op
        return gated_delta_rule_chunked(q, k, v, g, beta, scale, initial_state, T, solve="doubling")
    _log_once(f"GatedDeltaNet runs its pure-torch form on {q.device.type}")
    # The pure-torch forms compute in float32 whatever autocast or the weights say (the triangular
    # solve has no half-precision kernels, and the state recursion wants the mantissa); the output
    # returns in v's dtype and the state in the dtype it came in (computed dtype when there was none).
    out_dt = v.dtype
    state_dt = None if initial_state is None else initial_state.dtype
    def up(t):
        return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
    with torch.autocast(q.device.type, enabled=False):
        q, k, v, g, beta = (up(t) for t in (q, k, v, g, beta))
        s0 = None if initial_state is None else up(initial_state)
        if T == 1:
            o, S = gated_delta_rule_recurrent(q, k, v, g, beta, scale, s0)
        else:   # one frame of tokens is one chunk: the triangular solve beats a loop over its tokens
            o, S = gated_delta_rule_chunked(q, k, v, g, beta, scale, s0, min(chunk_size, T))
    return o.to(out_dt), (S if state_dt is None else S.to(state_dt))
