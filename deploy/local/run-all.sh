#!/usr/bin/env bash
# Runs the whole pipeline locally: `switchboard all` (ingress on :8080, worker, dispatcher in one
# process) against the local RabbitMQ and Redis.
#
# Configuration: SWITCHBOARD_* variables from the environment, or from ./.env if it exists
# (copy .env.example). Unset required values get obvious DEMO placeholders so the stack starts on
# a fresh machine; set the real ones to talk to Meta and an LLM:
#   SWITCHBOARD_PHONE_NUMBER_ID, SWITCHBOARD_APP_SECRET, SWITCHBOARD_VERIFY_TOKEN,
#   SWITCHBOARD_ACCESS_TOKEN (Meta app), SWITCHBOARD_LLM_BASE_URL, SWITCHBOARD_LLM_API_KEY,
#   SWITCHBOARD_LLM_MODEL (any OpenAI-compatible API: OpenAI, vLLM, Ollama, llama.cpp).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/ensure-services.sh
if [ -f .env ]; then
  set -a
  # shellcheck disable=SC1091
  . ./.env
  set +a
fi
demo() { # var value
  if [ -z "${!1:-}" ]; then
    export "$1=$2"
    echo "run-all: $1 not set; using the DEMO value '$2'" >&2
  fi
}
demo SWITCHBOARD_PHONE_NUMBER_ID 200000000000002
demo SWITCHBOARD_APP_SECRET demo-app-secret-change-me
demo SWITCHBOARD_VERIFY_TOKEN demo-verify-token
demo SWITCHBOARD_ACCESS_TOKEN demo-access-token
exec cargo run --release -p switchboard -- all
