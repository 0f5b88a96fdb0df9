"""The doc-test runner itself: a page that disagrees with the program fails, and the
conventions (docs/contributing.md) are enforced."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
import yaml

from docs.markdown import DocError, Role, parse_page
from docs.runner import BlockFailed, PageRun, check_excerpt
from docs.shell import Background, Shell
from docs.transcript import commands, matches
from docs.workspace import Addresses, rewrite_deployment

ROOT = Path(__file__).resolve().parents[2]


def page(tmp_path: Path, text: str, name: str = "page.md") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# ------------------------------------------------------------------ transcripts


def test_commands_split_a_transcript_with_continuations() -> None:
    found = commands("$ echo a \\\n    b\na b\n$ true\n$ echo c\nc\n")
    assert [(c.text, c.expected) for c in found] == [
        ("echo a \\\n    b", "a b"),
        ("true", ""),
        ("echo c", "c"),
    ]


def test_output_is_compared_exactly_except_where_the_doc_writes_an_ellipsis() -> None:
    assert matches("id 42\nok", "id 42\nok\n\n")  # trailing blank lines aside
    assert not matches("id 42\nok", "id 43\nok")
    assert not matches("ok", "ok\nmore")  # nothing unshown may follow
    assert not matches("ok", "")
    assert matches("", "")
    assert matches("task sessions/…/tasks/… done", "task sessions/ab/tasks/cd done")
    assert not matches("task sessions/…/tasks/… done", "task sessions/ab/tasks/cd failed")
    assert matches("{\n  …\n}", "{\n  a\n  b\n}")  # a line of `…` is any number of lines
    assert matches("{\n  …\n}", "{\n}")
    assert not matches("{\n  …\n}", "{\n  a\n]")


# ------------------------------------------------------------------ conventions


def test_a_block_in_an_unknown_language_must_be_annotated(tmp_path: Path) -> None:
    path = page(tmp_path, "# P\n\n```ts\nconst a = 1;\n```\n")
    with pytest.raises(DocError, match=r"page.md:3: a ```ts block is neither run nor skipped"):
        parse_page(path, tmp_path)


def test_a_skip_needs_a_reason_and_directives_are_known(tmp_path: Path) -> None:
    path = page(tmp_path, "<!-- doc-test: skip -->\n```bash\nkubectl apply\n```\n")
    with pytest.raises(DocError, match="needs a value"):
        parse_page(path, tmp_path)
    path = page(tmp_path, "<!-- doc-test: skipp: typo -->\n```bash\nls\n```\n")
    with pytest.raises(DocError, match="unknown doc-test directive 'skipp'"):
        parse_page(path, tmp_path)


def test_commands_in_a_plain_block_must_be_a_console_block(tmp_path: Path) -> None:
    path = page(tmp_path, "```\n$ llama-mesh status\n```\n")
    with pytest.raises(DocError, match="make it ```console"):
        parse_page(path, tmp_path)
    path = page(tmp_path, "```\ncurl -s localhost:8080/v1/sessions\n```\n")
    with pytest.raises(DocError, match="make it ```console"):
        parse_page(path, tmp_path)


def test_an_annotation_must_precede_a_block(tmp_path: Path) -> None:
    path = page(tmp_path, "<!-- doc-test: skip: why -->\nSome prose.\n\n```bash\nls\n```\n")
    with pytest.raises(DocError, match="not followed by a code block"):
        parse_page(path, tmp_path)


def test_roles(tmp_path: Path) -> None:
    path = page(
        tmp_path,
        """\
        <!-- doc-test: deployment: examples/quickstart/deployment.yaml -->
        ```python
        print(1)
        ```

        ```text
        1
        ```

        ```
        a -> b
        ```

        <!-- doc-test: skip: needs docker -->
        ```bash
        docker build .
        ```

        ```yaml
        name: x
        ```
        """,
    )
    parsed = parse_page(path, tmp_path)
    assert parsed.deployment == "examples/quickstart/deployment.yaml"
    roles = [b.role for b in parsed.blocks]
    assert roles == [Role.PYTHON, Role.OUTPUT, Role.FIGURE, Role.SKIP, Role.DEPLOYMENT]
    assert parsed.blocks[0].output is parsed.blocks[1]


def test_every_page_is_found_and_follows_the_conventions() -> None:
    from docs.test_docs import pages

    found = {p.relative_to(ROOT).as_posix() for p in pages()}
    assert {"README.md", "docs/contributing.md", "docs/quickstart.md"} <= found


# ------------------------------------------------------------------ excerpts


def test_an_excerpt_must_be_in_the_file_in_order(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("a = 1\nb = 2\n\nc = 3\nd = 4\n", encoding="utf-8")
    path = page(
        tmp_path,
        "<!-- doc-test: excerpt: m.py -->\n```python\n# m.py\na = 1\nb = 2\n# …\nd = 4\n```\n",
    )
    [block] = parse_page(path, tmp_path).blocks
    check_excerpt(block, tmp_path)
    block.text = block.text.replace("d = 4", "d = 5")
    with pytest.raises(BlockFailed, match="d = 5"):
        check_excerpt(block, tmp_path)
    block.text = "d = 4\n…\na = 1\n"  # out of order
    with pytest.raises(BlockFailed):
        check_excerpt(block, tmp_path)


# ------------------------------------------------------------------ addresses


def test_a_deployment_file_moves_to_free_ports_and_keeps_its_comments(tmp_path: Path) -> None:
    path = tmp_path / "deployment.yaml"
    path.write_text(
        "name: q   # the name\nnats:\n  port: 4222\ncontrol_plane:\n  port: 50051  # gRPC\n"
        "  metrics_port: 9464\ngateway: {port: 8080}\n"
        "services:\n  echo: {source: 'm:echo', port: 7000, metrics_port: 9465}\n",
        encoding="utf-8",
    )
    moved = rewrite_deployment(path)
    assert moved is not None
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert data["control_plane"]["port"] == 0
    assert data["nats"]["port"] == -1
    assert data["services"]["echo"]["port"] == 0
    assert data["gateway"]["port"] == moved.gateway != 8080
    assert len(str(moved.gateway)) == 4  # tables keep their widths
    assert "# the name" in text and "# gRPC" in text
    assert (moved.doc_control_plane, moved.doc_gateway) == (50051, 8080)
    # Metrics ports the page scrapes: free ones of as many digits, mapped.
    assert moved.moved == {
        9464: data["control_plane"]["metrics_port"],
        9465: data["services"]["echo"]["metrics_port"],
    }
    assert all(len(str(port)) == 4 for port in moved.moved.values())


def test_a_deployment_without_ports_gets_them(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("name: q\nservices: {}\n", encoding="utf-8")
    moved = rewrite_deployment(path)
    assert moved is not None and moved.doc_control_plane == 50051 and moved.doc_gateway == 8080
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert data["control_plane"]["port"] == 0
    assert data["gateway"]["port"] == moved.gateway


def test_addresses_map_both_ways_and_only_whole_addresses() -> None:
    addresses = Addresses()
    addresses.add(50051, 41234)
    addresses.add(8080, 9123)
    command = "grpcurl 127.0.0.1:50051 list; curl localhost:8080/x; echo 127.0.0.1:500510 8080"
    assert addresses.forward(command) == (
        "grpcurl 127.0.0.1:41234 list; curl localhost:9123/x; echo 127.0.0.1:500510 8080"
    )
    assert addresses.backward("at 127.0.0.1:41234 and http://localhost:9123") == (
        "at 127.0.0.1:50051 and http://localhost:8080"
    )


# ------------------------------------------------------------------ the shell


async def test_the_shell_keeps_state_and_exit_codes_between_commands(tmp_path: Path) -> None:
    async with Shell(tmp_path, {"PATH": "/usr/bin:/bin"}) as shell:
        assert await shell.run("T=hello; alias say='echo said'", timeout=10) == ("", 0)
        assert await shell.run("say $T", timeout=10) == ("said hello\n", 0)
        assert await shell.run("false", timeout=10) == ("", 1)
        assert await shell.run("echo $?", timeout=10) == ("1\n", 0)
        # stdout and stderr in the order they were written, as a terminal shows them
        out, _ = await shell.run("echo 1; echo 2 >&2; echo 3", timeout=10)
        assert out == "1\n2\n3\n"
        # a command that reads stdin does not eat the commands after it
        assert await shell.run("cat; echo after", timeout=10) == ("after\n", 0)


async def test_a_background_command_stops_on_ctrl_c(tmp_path: Path) -> None:
    job = Background(
        "trap 'echo interrupted; exit 0' INT; echo ready; while :; do sleep 0.1; done",
        tmp_path,
        {"PATH": "/usr/bin:/bin"},
    )
    await job.start()
    assert await job.until(lambda out: "ready" in out, timeout=10)
    assert await job.stop(timeout=10) == 0
    assert job.output == "ready\ninterrupted\n"


# ------------------------------------------------------------------ a whole page


async def test_a_page_that_disagrees_with_the_program_fails(tmp_path: Path) -> None:
    path = page(
        tmp_path,
        """\
        ```console
        $ N=3
        $ echo "$N ticks"
        3 ticks
        $ echo "$N ticks"
        4 ticks
        ```

        ```python
        print({"ticks": 3})
        ```

        ```text
        {'ticks': 3}
        ```

        ```python
        raise SystemExit("no")
        ```

        ```bash
        echo fine
        false
        ```
        """,
    )
    parsed = parse_page(path, tmp_path)
    async with asyncio.timeout(60), PageRun(parsed, ROOT, tmp_path / "run") as run:
        failures = await run.run()
    assert [f.block.line for f in failures] == [1, 17, 21]
    assert "4 ticks" in failures[0].message and "3 ticks" in failures[0].message
    assert "exited 1" in failures[1].message and "no" in failures[1].message
    assert "$ false" in failures[2].message
