"""The deployment's models: a ModelConfig becomes llama-index's OpenAILike, which talks to
the endpoint with the model's name, its key (read from the variable the config names),
its limits and retries; Python users may give any LLM instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.llms import ChatMessage, MockLLM
from llama_index.llms.openai_like import OpenAILike

from llama_mesh.config import ModelConfig
from llama_mesh.launch.deployment import DeploymentError, parse_deployment
from llama_mesh.testing import Reply, ScriptedModel, ToolCall
from llama_mesh.worker.models import (
    ModelKeyMissingError,
    ModelRegistry,
    UnknownModelError,
    build_llm,
    model_client,
)


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def test_an_agent_on_a_model_of_the_deployment_reaches_the_endpoint_as_configured(
    model: ScriptedModel, model_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCRIPTED_KEY", "sk-test-123")
    config = ModelConfig(
        base_url=model_url,
        model="llama3.1",
        api_key_env="SCRIPTED_KEY",
        max_tokens=64,
        temperature=0.5,
        max_retries=0,
    )
    model.script(Reply(tool_calls=[ToolCall("add", {"a": 2, "b": 3})]), Reply("2 + 3 = 5"))
    async with model_client("local", config) as client:
        agent = FunctionAgent(
            tools=[add], llm=build_llm("local", config, async_openai_client=client)
        )
        assert str(await agent.run(user_msg="What is 2 + 3?")) == "2 + 3 = 5"
    first, second = model.requests
    assert first.headers["authorization"] == "Bearer sk-test-123"
    assert first.body["model"] == "llama3.1"
    assert (first.body["max_tokens"], first.body["temperature"]) == (64, 0.5)
    assert [t["function"]["name"] for t in first.body["tools"]] == ["add"]
    assert second.messages[-1] == {"role": "tool", "content": "5", "tool_call_id": "call_1"}


async def test_the_model_name_defaults_to_the_id_and_no_key_is_sent_without_api_key_env(
    model: ScriptedModel, model_url: str
) -> None:
    model.script("hi")
    config = ModelConfig(base_url=model_url)
    async with model_client("llama3.1", config) as client:
        llm = build_llm("llama3.1", config, async_openai_client=client)
        await llm.achat([ChatMessage(role="user", content="hello")])
    [request] = model.requests
    assert request.body["model"] == "llama3.1"
    assert request.headers["authorization"] == "Bearer none"


async def test_a_failed_request_is_retried_max_retries_times(
    model: ScriptedModel, model_url: str
) -> None:
    model.script(Reply.failure(503, "overloaded"), "after a retry")
    config = ModelConfig(base_url=model_url, max_retries=1)
    async with model_client("m", config) as client:
        llm = build_llm("m", config, async_openai_client=client)
        response = await llm.achat([ChatMessage(role="user", content="hello")])
    assert response.message.content == "after a retry"
    assert len(model.requests) == 2


def test_every_setting_reaches_the_llm() -> None:
    config = ModelConfig(
        base_url="http://127.0.0.1:1/v1",
        model="name-there",
        timeout=12.5,
        max_retries=4,
        context_window=8192,
        max_tokens=100,
        temperature=0.7,
        function_calling=False,
    )
    llm = build_llm("id", config)
    assert isinstance(llm, OpenAILike)
    assert (llm.model, llm.api_base, llm.timeout, llm.max_retries) == (
        "name-there",
        "http://127.0.0.1:1/v1",
        12.5,
        4,
    )
    assert (llm.context_window, llm.max_tokens, llm.temperature) == (8192, 100, 0.7)
    assert llm.metadata.is_chat_model and not llm.metadata.is_function_calling_model
    # Overrides (an agent's own sampling) win over the model's settings.
    assert build_llm("id", config, temperature=0.0).temperature == 0.0


def test_a_key_variable_that_is_not_set_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    config = ModelConfig(base_url="http://127.0.0.1:1/v1", api_key_env="NOT_SET_KEY")
    with pytest.raises(ModelKeyMissingError, match="NOT_SET_KEY that holds its API key"):
        build_llm("gpt", config)


async def test_the_registry_builds_each_model_once_takes_any_llm_and_closes_what_it_built(
    model: ScriptedModel, model_url: str
) -> None:
    model.script("hi")
    mock = MockLLM()
    registry = ModelRegistry({"local": ModelConfig(base_url=model_url), "mock": mock})
    llm = registry.llm("local")
    assert llm is registry.llm("local")
    assert registry.llm("mock") is mock
    assert "local" in registry and "other" not in registry
    with pytest.raises(UnknownModelError, match=r"'other' is not a model .*models: local, mock"):
        registry.llm("other")
    assert isinstance(llm, OpenAILike)
    client = llm._get_aclient()
    await llm.achat([ChatMessage(role="user", content="hello")])  # a kept-alive connection
    await registry.aclose()
    assert client.is_closed()


def test_the_models_section_names_each_problem_with_its_line(tmp_path: Path) -> None:
    text = """\
name: demo
models:
  "bad id":
    base_url: http://127.0.0.1:1/v1
  local:
    base_url: ftp://x
    api_key_env: 1KEY
    tiemout: 3
  remote:
    model: gpt-4o
"""
    with pytest.raises(DeploymentError) as caught:
        parse_deployment(text, tmp_path / "deployment.yaml")
    assert caught.value.problems == [
        "models.bad id (line 3): 'bad id' is not a model id: 1-128 of letters, digits and "
        "`_ . : / -`, starting with a letter or digit",
        "models.local.base_url (line 6): 'ftp://x' is not an http(s) URL: the API's base, "
        "e.g. http://127.0.0.1:11434/v1 (with /v1, no query)",
        "models.local.api_key_env (line 7): '1KEY' is not an environment variable name: "
        "letters, digits and '_', not starting with a digit",
        "models.local.tiemout (line 8): unknown field 'tiemout' (did you mean 'timeout'?); "
        "valid fields here: base_url, model, api_key_env, timeout, max_retries, "
        "context_window, max_tokens, temperature, function_calling",
        "models.remote (line 9): 'base_url' is required",
    ]


def test_a_valid_models_section(tmp_path: Path) -> None:
    text = """\
name: demo
models:
  meta-llama/Llama-3.1-8B-Instruct:
    base_url: http://127.0.0.1:8000/v1
  gpt:
    base_url: https://api.openai.com/v1
    model: gpt-4o-mini
    api_key_env: OPENAI_API_KEY
    context_window: 128000
"""
    d = parse_deployment(text, tmp_path / "deployment.yaml")
    assert list(d.models) == ["meta-llama/Llama-3.1-8B-Instruct", "gpt"]
    llama = d.models["meta-llama/Llama-3.1-8B-Instruct"]
    assert llama.name("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama/Llama-3.1-8B-Instruct"
    assert (llama.timeout, llama.max_retries, llama.function_calling) == (120.0, 2, True)
    assert d.models["gpt"].name("gpt") == "gpt-4o-mini"


def test_an_optional_setting_given_as_none_is_its_default(tmp_path: Path) -> None:
    """`api_key_env: null` (or None from Python) means no key, as leaving it out does: its
    pattern check raised TypeError on None."""
    config = ModelConfig(base_url="http://127.0.0.1:1/v1", api_key_env=None)
    assert config.api_key_env is None
    text = "name: demo\nmodels:\n  local: {base_url: 'http://127.0.0.1:1/v1', api_key_env: null}\n"
    d = parse_deployment(text, tmp_path / "deployment.yaml")
    assert d.models["local"].api_key_env is None
