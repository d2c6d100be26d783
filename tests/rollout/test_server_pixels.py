"""A vLLM rollout server cuts each clip into the trainer's video tokens: the run's pixel limits
travel with every request, and a server that still reads a prompt differently is counted."""
import pytest

from egoadapt.inputs.video import VideoInputs
from egoadapt.rollout.engines import VLLMServerEngine
from tests.inputs.test_context import processor, synth_samples

GREEDY = {"temperature": 0.0, "max_tokens": 2}


@pytest.mark.server
def test_the_server_reads_the_trainers_prompt_under_the_runs_pixel_limits(vllm_server, tiny_model_dir, synth_dir,
                                                                          tmp_path):
    samples = synth_samples(synth_dir, n=2)
    default = VideoInputs(samples, processor(tiny_model_dir), frames_cfg=None)
    # a budget over the checkpoint's own (which the server keeps unless told): more video tokens
    small = VideoInputs(samples, processor(tiny_model_dir, lo=224 * 224, hi=224 * 224), frames_cfg=None)
    requests = [small.request(s.id, "close") for s in samples]
    assert [len(r.prompt_ids) for r in requests] != [len(default.request(s.id, "close").prompt_ids) for s in samples]

    engine = VLLMServerEngine(small, GREEDY, vllm_server.base_url, vllm_server.served_model_name, tmp_path)
    try:
        assert engine.mm_processor_kwargs == {"min_pixels": 224 * 224, "max_pixels": 224 * 224}
        engine.generate(requests, None)
        assert engine.counters["prompt_token_mismatches"] == 0  # the server counted the trainer's tokens
        engine.mm_processor_kwargs = {}  # as before: the server's own limits
        engine.generate(requests, None)
        assert engine.counters["prompt_token_mismatches"] == len(requests)
    finally:
        engine.close()
