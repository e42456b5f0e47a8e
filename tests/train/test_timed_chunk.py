"""train/timed_chunk.py: chunks until a deadline, each ending on a checkpoint, and the weights of the step reached."""
import json

from treefuse.checkpoint import load_weights
from treefuse.train.session import resume_session, start_session
from treefuse.train.timed_chunk import main, train_until

from test_train_run import data, tiny_config  # noqa: F401


def test_a_spent_deadline_still_trains_one_whole_chunk_that_resumes(tmp_path, data):
    session = start_session(tiny_config(data), tmp_path / "run")
    summary = train_until(session, seconds=1e-6, first_chunk=2)
    assert summary["step"] == summary["steps_this_call"] == 2
    assert resume_session(tmp_path / "run", []).trainer.step == 2  # the chunk ended on a whole checkpoint


def test_enough_time_runs_to_the_end_and_writes_the_weights(tmp_path, data, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(tiny_config(data).to_yaml())
    out = ["--config", str(config), "--out", str(tmp_path / "run"), "--seconds", "600", "--first-chunk", "2",
           "--weights", str(tmp_path / "w.safetensors"), "--json", str(tmp_path / "s.json")]
    assert main(out) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["step"] == summary["steps"] == 6 and (tmp_path / "run" / "final.safetensors").is_file()
    record = load_weights(tmp_path / "w.safetensors").provenance
    assert record["kind"] == "chunk" and record["steps"] == 6


def test_bad_arguments_are_one_line_exit_2(tmp_path, capsys):
    assert main(["--resume", str(tmp_path / "none"), "--seconds", "5"]) == 2
    assert main(["--resume", str(tmp_path), "--config", "quick", "--seconds", "5"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("treefuse: error: ") for line in errors)
