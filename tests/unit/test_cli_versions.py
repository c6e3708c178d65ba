"""Which CLI an image holds (`--version`'s line) and whether it takes our flags (pure)."""

from __future__ import annotations

from conduitctl.conduit_cli import cli_version, dialect_in_help, flag_problem

V2_ARGS = ["start", "--max-common-clients", "50", "--bandwidth", "40", "--data-dir", "/d"]
V1_ARGS = ["start", "--max-clients", "50", "--bandwidth", "40", "--stats-file", "/d/s.json"]


def test_the_version_line_of_cobra_and_of_the_simulator():
    assert cli_version("conduit version 2.0.0\n") == "2.0.0"
    assert cli_version("conduit version v1.5.0\n") == "1.5.0"
    assert cli_version("conduit version dev\n") is None  # a development build: no version
    assert cli_version("conduit version release-cli-2.0.0\n") == "2.0.0"  # git describe
    assert cli_version("python3: can't open file\n") is None
    assert cli_version("") is None


def test_an_image_of_the_other_cli_is_named_with_the_flag_and_the_dialect_to_set():
    assert flag_problem("img:1", "1.5.0", V2_ARGS, "v2") == (
        "image img:1 runs the Conduit CLI 1.5.0, which rejects --max-common-clients; "
        'set workload.flag_dialect = "v1"'
    )
    assert flag_problem("img:2", "2.0.0", V1_ARGS, "v1") == (
        "image img:2 runs the Conduit CLI 2.0.0, which rejects --max-clients; "
        'set workload.flag_dialect = "v2"'
    )


def test_the_flags_of_its_own_dialect_pass():
    assert flag_problem("img", "2.0.0", V2_ARGS, "v2") is None
    assert flag_problem("img", "1.5.0", V1_ARGS, "v1") is None
    assert flag_problem("img", "2.1.0", [*V2_ARGS, "--set", "A=1"], "v2") is None


def test_an_extra_arg_of_the_other_version_is_named_as_such():
    problem = flag_problem("img", "2.0.0", [*V2_ARGS, "--stats-file", "x"], "v2")
    assert problem is not None and problem.endswith("rejects --stats-file; drop it from "
                                                    "workload.extra_args")  # fmt: skip


def test_a_dev_build_is_known_by_the_flags_its_help_lists():
    assert dialect_in_help("  -m, --max-common-clients int   max common clients") == "2"
    assert dialect_in_help("  -m, --max-clients int   maximum number of proxy clients") == "1"
    assert dialect_in_help("usage: nginx [-h]") is None
    problem = flag_problem("img", "1", V2_ARGS, "v2")
    assert problem is not None and "runs the Conduit CLI 1.x, which rejects" in problem
