#!/usr/bin/env bash
# Serve a model with vLLM for GRPO rollouts (rollout=vllm_server) or as the LLM judge (judge=vllm_local).
#   launch/vllm_server.sh MODEL [PORT] [extra vllm serve args...]
#   CUDA_VISIBLE_DEVICES=6 launch/vllm_server.sh Qwen/Qwen2.5-VL-7B-Instruct 8000              # rollouts
#   CUDA_VISIBLE_DEVICES=7 VLLM_DEV_MODE=0 launch/vllm_server.sh Qwen/Qwen2.5-7B-Instruct 8001  # the judge
# Environment:
#   VLLM_HOST      interface to bind (default 127.0.0.1: this machine only). Another interface
#                  (0.0.0.0, a node's address) with dev mode needs VLLM_API_KEY.
#   VLLM_DEV_MODE  1 (default): dev mode, whose POST /collective_rpc egoadapt uses to reload the
#                  trainer's weights after each step (from rollout.weights_dir, storage both the
#                  trainer and this server read). /collective_rpc runs any worker method: this
#                  script refuses to expose it on another interface without an API key.
#                  0: no dev endpoints (a judge).
#   VLLM_WEIGHT_TRANSFER  in dev mode, the weight-transfer engine the trainer broadcasts its weights
#                  over (rollout.sync=transfer|auto): nccl (this server on CUDA GPUs, the trainer on
#                  others), egoadapt_gloo (egoadapt's gloo engine, registered by its vLLM plugin: a CPU
#                  server, or no GPU fabric between them), none (weights by disk only). Default: nccl
#                  when nvidia-smi lists a GPU, else egoadapt_gloo. The trainer hosts the group on
#                  rollout.transfer_address:transfer_port; the server's workers connect to it.
#   VLLM_API_KEY   the key clients must send (egoadapt sends the variables named by
#                  rollout.api_key_env and judge.api_key_env, both VLLM_API_KEY by default). With a key,
#                  every path but /health is guarded, dev endpoints included (vLLM's own --api-key
#                  guards only /v1/...). Passed in the environment, never on the command line.
#   EGOADAPT_DRY_RUN=1  print the command instead of running it.
# Wait for it: launch/wait_for_servers.sh http://127.0.0.1:8000 [more URLs...]
set -euo pipefail
model=${1:?usage: launch/vllm_server.sh MODEL [PORT] [vllm serve args...]}
port=${2:-8000}
shift $(( $# >= 2 ? 2 : 1 ))
host=${VLLM_HOST:-127.0.0.1}
dev=${VLLM_DEV_MODE:-1}
auth=()
case "$host" in
  127.*|localhost|::1|'[::1]') local_only=1 ;;
  *) local_only=0 ;;
esac
if [[ "$dev" == 1 && "$local_only" == 0 && -z "${VLLM_API_KEY:-}" ]]; then
  echo "launch/vllm_server.sh: refusing to serve dev-mode endpoints (/collective_rpc runs any worker method) on" \
       "$host without an API key. Set VLLM_API_KEY (the trainer sends it: rollout.api_key_env)," \
       "bind 127.0.0.1 (VLLM_HOST), or turn dev mode off (VLLM_DEV_MODE=0: no weight syncs)." >&2
  exit 2
fi
trust=()
transfer=()
if [[ "$dev" == 1 ]]; then
  export VLLM_SERVER_DEV_MODE=1
  trust=(--trust-request-mm-kwargs)  # the trainer sends its pixel limits (model.min/max_pixels) with each rollout
  backend=${VLLM_WEIGHT_TRANSFER:-}
  if [[ -z "$backend" ]]; then
    if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q GPU; then backend=nccl; else backend=egoadapt_gloo; fi
  fi
  case "$backend" in
    none) ;;
    nccl|egoadapt_gloo) transfer=(--weight-transfer-config "{\"backend\": \"$backend\"}") ;;
    *) echo "launch/vllm_server.sh: VLLM_WEIGHT_TRANSFER=$backend: choose nccl, egoadapt_gloo or none" >&2; exit 2 ;;
  esac
else
  unset VLLM_SERVER_DEV_MODE
fi
if [[ -n "${VLLM_API_KEY:-}" ]]; then
  export VLLM_API_KEY  # vLLM reads it; require_api_key extends it to every path but /health
  auth=(--middleware egoadapt.rollout.server.require_api_key)
fi
# Context: VLLM_MAX_MODEL_LEN (default 16384) must hold the run's longest prompt plus max_completion_length.
# `egoadapt train` logs both ("context: longest prompt N tokens ...") and refuses a server that is too short,
# naming the clip and the VLLM_MAX_MODEL_LEN to restart with. VLLM_MAX_NUM_BATCHED_TOKENS (default: the
# context length) also sizes vLLM's encoder cache, and vLLM refuses a video with more tokens than it holds.
# Pixels: a rollout server must process video as the trainer does. In dev mode it trusts per-request
# mm_processor_kwargs, and the trainer sends its model.min_pixels / model.max_pixels with every rollout; a server
# started otherwise needs --mm-processor-kwargs '{"min_pixels": 3136, "max_pixels": 200704}' (the 7B recipes'),
# or it cuts clips into other video tokens (the trainer warns and counts rollout/prompt_token_mismatches).
cmd=(vllm serve "$model" \
  --host "$host" --port "$port" \
  --served-model-name "$model" \
  --max-model-len "${VLLM_MAX_MODEL_LEN:-16384}" \
  --max-num-batched-tokens "${VLLM_MAX_NUM_BATCHED_TOKENS:-${VLLM_MAX_MODEL_LEN:-16384}}" \
  --limit-mm-per-prompt '{"video": 1, "image": 0}' \
  --logprobs-mode processed_logprobs \
  "${trust[@]}" "${transfer[@]}" "${auth[@]}" "$@")
if [[ "${EGOADAPT_DRY_RUN:-0}" == 1 ]]; then
  echo "VLLM_SERVER_DEV_MODE=${VLLM_SERVER_DEV_MODE:-0} ${cmd[*]}"
  exit 0
fi
exec "${cmd[@]}"
