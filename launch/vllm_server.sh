#!/usr/bin/env bash
# Serve a model with vLLM for GRPO rollouts (rollout=vllm_server) or as the LLM judge (judge=vllm_local).
#   launch/vllm_server.sh MODEL [PORT] [extra vllm serve args...]
#   CUDA_VISIBLE_DEVICES=6,7 launch/vllm_server.sh Qwen/Qwen2.5-VL-7B-Instruct 8000 --tensor-parallel-size 2
# Dev mode exposes POST /collective_rpc, which egoadapt uses to reload the trainer's weights after each
# step (from rollout.weights_dir: storage both the trainer and this server can read). Bind to a private
# interface: dev mode endpoints must not face the internet.
set -euo pipefail
model=${1:?usage: launch/vllm_server.sh MODEL [PORT] [vllm serve args...]}
port=${2:-8000}
shift $(( $# >= 2 ? 2 : 1 ))
export VLLM_SERVER_DEV_MODE=1
exec vllm serve "$model" \
  --host "${VLLM_HOST:-0.0.0.0}" --port "$port" \
  --served-model-name "$model" \
  --max-model-len "${VLLM_MAX_MODEL_LEN:-16384}" \
  --limit-mm-per-prompt '{"video": 1, "image": 0}' \
  "$@"
