import numpy as np
import pytest

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


@pytest.mark.parametrize("tail", ["300,4.5,0.37", "300,4.5,0.", "3", "300,4."])
def test_read_metrics_leaves_out_an_interrupted_last_line(tmp_path, tail):
    # A killed run can leave its last row half written: "3" would read as step 3 (the steps
    # no longer increase) and "0." as a coverage of 0.
    rows = "step,wall_time,coverage\r\n100,1.5,0.25\r\n200,3.0,0.3\r\n"
    (tmp_path / "metrics.csv").write_text(rows + tail, newline="")
    m = read_metrics(tmp_path)
    np.testing.assert_array_equal(m["step"], [100.0, 200.0])
    np.testing.assert_array_equal(m["coverage"], [0.25, 0.3])


def test_read_metrics_names_a_malformed_line(tmp_path):
    (tmp_path / "metrics.csv").write_text("step,wall_time,coverage\n100,1.5\n200,3.0,0.3\n")
    with pytest.raises(ValueError, match=r"metrics.csv: line 2 has 2 cells, the header 3"):
        read_metrics(tmp_path)
