"""Every relative link in the project's markdown (README.md, docs/, artifacts/README.md) points at a
file that exists, and every #anchor at a heading of that file (GitHub's anchor rules), so moving a
section or a figure cannot leave a dead link behind."""
import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: str) -> set:
    """GitHub's heading anchors of a markdown file: lower case, punctuation dropped, spaces to hyphens,
    a repeated heading numbered -1, -2, ..."""
    seen, out = {}, set()
    in_code = False
    with open(path, encoding="utf-8") as f:
        for ln in f:
            if ln.startswith("```"):
                in_code = not in_code
            if in_code or not ln.startswith("#"):
                continue
            a = re.sub(r"[^\w\- ]", "", ln.lstrip("#").strip().lower()).replace(" ", "-")
            n = seen.get(a, 0)
            seen[a] = n + 1
            out.add(a if n == 0 else f"{a}-{n}")
    return out


def markdown_files() -> list:
    return ([os.path.join(ROOT, "README.md"), os.path.join(ROOT, "artifacts", "README.md")]
            + sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)))


def dead_links(files: list, root: str = ROOT) -> list:
    dead = []
    for md in files:
        text = open(md, encoding="utf-8").read()
        text = re.sub(r"```.*?```", "", text, flags=re.S)          # commands, not links
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):                        # http(s), mailto: not checked here
                continue
            path, _, anchor = target.partition("#")
            dest = md if not path else os.path.normpath(os.path.join(os.path.dirname(md), path))
            where = os.path.relpath(md, root)
            if not os.path.exists(dest):
                dead.append(f"{where}: {target} (no such file)")
            elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                dead.append(f"{where}: {target} (no such heading)")
    return dead


def test_every_relative_link_resolves():
    dead = dead_links(markdown_files())
    assert not dead, "dead links:\n" + "\n".join(dead)


def test_the_checker_finds_dead_links(tmp_path):
    (tmp_path / "fig.png").write_bytes(b"")
    md = tmp_path / "a.md"
    md.write_text("# Top part\n\n## A section, with `code`: and more\n\n"
                  "[ok](#a-section-with-code-and-more) ![ok](fig.png) [ok](a.md#top-part) [web](https://x.org/y)\n"
                  "[bad](#a-section) ![bad](figs/fig.png)\n\n```bash\n[not a link](nowhere)\n```\n")
    assert anchors(str(md)) == {"top-part", "a-section-with-code-and-more"}
    assert dead_links([str(md)], str(tmp_path)) == ["a.md: #a-section (no such heading)",
                                                    "a.md: figs/fig.png (no such file)"]
