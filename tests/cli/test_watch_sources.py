"""What `up --watch` restarts for a saved file: a service's own module restarts that
service, a helper under an import root every service importing from there, a package's
module its service; a changed deployment file the services whose section changed, or
names what only a new `up` applies."""

from __future__ import annotations

from pathlib import Path

import yaml

from llama_mesh.core.names import AGENTS_SERVICE
from llama_mesh.launch.deployment import Deployment, parse_deployment
from llama_mesh.launch.sources import affected, module_file, service_sources, watched_roots
from llama_mesh.launch.watch import file_changes


def _deployment(tmp_path: Path, **changes: object) -> Deployment:
    data: dict[str, object] = {
        "name": "sources",
        "services": {
            "alpha": {"source": "alpha:workflow"},
            "beta": {"source": "pkg.beta:workflow", "env": {"X": "1"}},
            "gamma": {"source": "gamma:workflow", "path": "elsewhere"},
            "human": {"kind": "human"},
        },
        **changes,
    }
    return parse_deployment(yaml.safe_dump(data), tmp_path / "deployment.yaml")


def _tree(tmp_path: Path) -> None:
    for relative in ("alpha.py", "helpers.py", "pkg/__init__.py", "pkg/beta.py"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "gamma.py").write_text("")


def test_a_saved_module_restarts_the_services_that_load_it(tmp_path: Path) -> None:
    _tree(tmp_path)
    sources = service_sources(_deployment(tmp_path))
    assert sources["beta"].files == {(tmp_path / "pkg" / "beta.py").resolve()}
    assert sources["human"].root is None  # built from the file alone
    assert watched_roots(sources, tmp_path / "deployment.yaml") == [tmp_path.resolve()]

    root = tmp_path.resolve()
    assert affected(sources, [tmp_path / "alpha.py"]) == {"alpha": [root / "alpha.py"]}
    assert affected(sources, [tmp_path / "pkg" / "beta.py"]) == {"beta": [root / "pkg" / "beta.py"]}
    assert affected(sources, [tmp_path / "elsewhere" / "gamma.py"]) == {
        "gamma": [root / "elsewhere" / "gamma.py"]
    }
    # A helper: every service importing from its directory (not gamma, which imports
    # from elsewhere, nor the human service, which loads no code).
    assert set(affected(sources, [tmp_path / "helpers.py"])) == {"alpha", "beta"}
    assert affected(sources, [Path("/somewhere/else.py")]) == {}
    # A module that is not under the root is not the service's to watch.
    assert module_file("json", tmp_path) is None


def test_a_saved_deployment_file_restarts_the_services_whose_section_changed(
    tmp_path: Path,
) -> None:
    _tree(tmp_path)
    before = _deployment(tmp_path)
    services = before.model_dump(mode="json", exclude_defaults=True)["services"]

    services["beta"]["env"] = {"X": "2"}
    assert file_changes(before, _deployment(tmp_path, services=services)) == ({"beta"}, [])

    services["alpha"]["replicas"] = 2
    del services["human"]
    assert file_changes(before, _deployment(tmp_path, services=services)) == (
        {"beta"},
        ["services.alpha.replicas", "services.human removed"],
    )
    # Other sections need a new `up`; models: reach the services built from them.
    later = _deployment(tmp_path, control_plane={"port": 0})
    assert file_changes(before, later) == (set(), ["control_plane"])
    model = {"local": {"base_url": "http://127.0.0.1:8000/v1", "model": "m"}}
    with_models = _deployment(tmp_path, models=model)
    again = _deployment(tmp_path, models={"local": {**model["local"], "model": "n"}})
    assert file_changes(with_models, again) == ({"human", AGENTS_SERVICE}, [])
