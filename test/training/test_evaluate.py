"""kairos evaluate: closed-loop episodes in the simulator with the committed artifact, and its report
(per-task table, GIF, real vs imagined strip)."""
import json

from PIL import Image

from training.evaluate import main


def test_evaluate_writes_report_with_imagined_frames(tmp_path):
    out = tmp_path / "rep"
    assert main(["--artifact", "artifacts/tiny_button_press", "--episodes", "1", "--max-steps", "6",
                 "--sampler-steps", "1", "--report", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert [r["task"] for r in rep["tasks"]] == ["button-press-topdown-v3"]
    assert rep["tasks"][0]["episodes"] == 1 and 1 <= rep["tasks"][0]["mean_steps"] <= 6
    html = (out / "report.html").read_text()
    assert "button-press-topdown-v3.gif" in html and "imagined.png" in html
    gif = Image.open(out / "button-press-topdown-v3.gif")
    assert gif.n_frames >= 2
    strip = Image.open(out / "imagined.png")
    assert strip.size[0] > 100 and strip.size[1] > 100
