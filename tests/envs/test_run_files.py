import numpy as np

from envs.run_files import read_metrics


def test_read_metrics_columns_in_file_order(tmp_path):
    (tmp_path / "metrics.csv").write_text("step,wall_time,coverage\n100,1.5,0.25\n200,3.0,\n")
    m = read_metrics(tmp_path)
    assert list(m) == ["step", "wall_time", "coverage"]
    np.testing.assert_array_equal(m["step"], [100.0, 200.0])
    assert m["coverage"][0] == 0.25 and np.isnan(m["coverage"][1])  # empty cell: NaN


def test_read_metrics_of_a_run_without_rows_is_empty(tmp_path):
    assert read_metrics(tmp_path) == {}  # no metrics.csv yet
    (tmp_path / "metrics.csv").write_text("step,wall_time\n")
    assert read_metrics(tmp_path) == {}
