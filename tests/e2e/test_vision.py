"""Images in every API, for a model with a vision projector (an `mmproj` GGUF beside it in its
repository), and a clear 400 in each API's own format for a model without one.

The vision model is the default model's file with a tiny random projector beside it
(tiny_projector.py): the engine really encodes each image into tokens and generates from them."""

from __future__ import annotations

import base64

import anthropic
import httpx
import ollama
import openai
import pytest
from bodhi_process import DEFAULT_MODEL, BodhiServer, add_model, default_model_file
from google import genai
from google.genai import types as genai_types
from tiny_projector import red_png, write_projector

VISION = "test/vision-GGUF:Q4_1"
PNG = red_png()
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
QUESTION = "What is in this image?"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("vision")
    hf_home = workdir / "hf"
    projector = workdir / "mmproj-vision-f16.gguf"
    write_projector(projector)
    add_model(hf_home, "test/vision-GGUF", "vision.Q4_1.gguf", source=default_model_file())
    add_model(hf_home, "test/vision-GGUF", "mmproj-vision-f16.gguf", source=projector)
    add_model(hf_home, "test/text-GGUF", "text.Q4_1.gguf", source=default_model_file())
    with BodhiServer(workdir, env={"HF_HOME": str(hf_home), "BODHI_PARALLEL": "2"}) as bodhi:
        yield bodhi


@pytest.fixture(scope="module")
def client(server: BodhiServer):
    with openai.OpenAI(base_url=server.api_url, api_key=server.token, timeout=120, max_retries=0) as c:
        yield c


def openai_image_message(text: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": DATA_URL}}]}]


def test_the_projector_is_found_shown_and_given_to_the_engine(server: BodhiServer, client: openai.OpenAI):
    ids = {model.id for model in client.models.list()}
    assert VISION in ids and not any("mmproj" in model_id for model_id in ids)  # a projector is no model of its own
    shown = ollama.Client(host=server.base_url, headers=server.auth).show(VISION)
    assert "vision" in shown.capabilities and "mmproj-vision-f16.gguf" in shown.modelfile
    client.chat.completions.create(model=VISION, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    [engine] = [e for e in server.engines() if e["model"] == VISION]
    assert "--mmproj" in engine["args"]


def test_an_image_reaches_the_engine_through_the_openai_api(client: openai.OpenAI):
    with_image = client.chat.completions.create(model=VISION, messages=openai_image_message(), max_tokens=4)
    text_only = client.chat.completions.create(model=VISION, messages=[{"role": "user", "content": QUESTION}], max_tokens=4)
    # The image became tokens of the prompt.
    assert with_image.usage.prompt_tokens > text_only.usage.prompt_tokens
    assert with_image.choices[0].message.content is not None


def test_an_image_reaches_the_engine_through_the_anthropic_api(server: BodhiServer):
    client = anthropic.Anthropic(base_url=server.base_url, api_key=server.token, max_retries=0, timeout=120)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()}}
    with_image = client.messages.create(model=VISION, max_tokens=4, messages=[
        {"role": "user", "content": [{"type": "text", "text": QUESTION}, image]}])
    text_only = client.messages.create(model=VISION, max_tokens=4, messages=[{"role": "user", "content": QUESTION}])
    assert with_image.usage.input_tokens > text_only.usage.input_tokens


def test_an_image_reaches_the_engine_through_the_ollama_api(server: BodhiServer):
    client = ollama.Client(host=server.base_url, headers=server.auth)
    chat = client.chat(model=VISION, messages=[{"role": "user", "content": QUESTION, "images": [PNG]}], options={"num_predict": 4})
    plain = client.chat(model=VISION, messages=[{"role": "user", "content": QUESTION}], options={"num_predict": 4})
    assert chat.prompt_eval_count > plain.prompt_eval_count
    generated = client.generate(model=VISION, prompt=QUESTION, images=[PNG], options={"num_predict": 4})
    assert generated.done and generated.prompt_eval_count > plain.prompt_eval_count - 1


def test_an_image_reaches_the_engine_through_the_gemini_and_responses_apis(server: BodhiServer, client: openai.OpenAI):
    gemini = genai.Client(api_key=server.token, http_options=genai_types.HttpOptions(base_url=server.base_url, api_version="v1beta"))
    answer = gemini.models.generate_content(
        model=VISION, contents=[QUESTION, genai_types.Part.from_bytes(data=PNG, mime_type="image/png")],
        config=genai_types.GenerateContentConfig(max_output_tokens=4))
    plain = gemini.models.generate_content(model=VISION, contents=QUESTION, config=genai_types.GenerateContentConfig(max_output_tokens=4))
    assert answer.usage_metadata.prompt_token_count > plain.usage_metadata.prompt_token_count
    response = client.responses.create(model=VISION, max_output_tokens=16, input=[{"role": "user", "content": [
        {"type": "input_text", "text": QUESTION}, {"type": "input_image", "image_url": DATA_URL}]}])
    assert response.status in ("completed", "incomplete") and response.usage.input_tokens > plain.usage_metadata.prompt_token_count - 1


def test_a_model_without_a_projector_refuses_images_in_each_apis_format(server: BodhiServer, client: openai.OpenAI):
    text_model = "test/text-GGUF:Q4_1"
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=text_model, messages=openai_image_message(), max_tokens=4)
    assert refused.value.body["param"] == "messages" and "cannot read images" in refused.value.body["message"]
    with httpx.Client(base_url=server.base_url, headers=server.auth, timeout=60) as http:
        claude = http.post("/v1/messages", json={"model": text_model, "max_tokens": 4, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()}}]}]})
        assert claude.status_code == 400 and claude.json()["type"] == "error"
        assert "cannot read images" in claude.json()["error"]["message"]
        llama = http.post("/api/chat", json={"model": text_model, "stream": False, "messages": [
            {"role": "user", "content": QUESTION, "images": [base64.b64encode(PNG).decode()]}]})
        assert llama.status_code == 400 and "cannot read images" in llama.json()["error"]
    # Nothing was loaded to find that out.
    assert not [e for e in server.engines() if e["model"] == text_model]
