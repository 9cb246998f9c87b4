from pathlib import Path

from core.train import demo


def test_empty_report_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = demo.write_report({})
    assert "No app is installed yet" in text
    assert Path("runs/demo/report.md").read_text() == text


def test_report_lists_metrics_and_links_figures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    figure = Path("runs/pointer/demo/figures/val_epoch001.png")
    text = demo.write_report({"pointer": ({"test/seq_acc": 0.91234}, [figure], 12.0)})
    assert "| `test/seq_acc` | 0.9123 |" in text
    assert "](../pointer/demo/figures/val_epoch001.png)" in text


def test_discovers_apps_with_an_entry_point_and_default_config(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[3])
    found = demo.discover_apps()
    for app in found:
        assert Path(f"apps/{app}/__main__.py").is_file()
        assert Path(f"configs/{app}/default.yaml").is_file()
    assert found == sorted(found)
