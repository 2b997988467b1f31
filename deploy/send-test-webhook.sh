#!/usr/bin/env bash
# Sends Meta's verification handshake and one signed test webhook (a text message from a made-up
# user) to a running ingress, and fails unless both are accepted. Works against the compose stack,
# deploy/local/run-all.sh and a port-forwarded Kubernetes ingress alike.
#
#   bash deploy/send-test-webhook.sh [URL]       # default http://127.0.0.1:8080/webhooks/whatsapp
#
# Uses SWITCHBOARD_PHONE_NUMBER_ID, SWITCHBOARD_APP_SECRET and SWITCHBOARD_VERIFY_TOKEN from the
# environment, else from ./.env, else the DEMO values that docker-compose.yml and run-all.sh use.
# The worker then asks the LLM and the dispatcher tries to send the reply to the Graph API: with the
# DEMO access token that send fails and lands in the DLQ, which is expected.
# Needs curl and openssl.
set -euo pipefail
cd "$(dirname "$0")/.."

url=${1:-http://127.0.0.1:8080/webhooks/whatsapp}
if [ -f .env ]; then
  # Only the three keys needed, without running the file.
  for key in SWITCHBOARD_PHONE_NUMBER_ID SWITCHBOARD_APP_SECRET SWITCHBOARD_VERIFY_TOKEN; do
    if [ -z "${!key:-}" ]; then
      value=$(sed -n "s/^${key}=//p" .env | tail -n 1)
      value=${value#\"} && value=${value%\"}
      [ -n "$value" ] && export "$key=$value"
    fi
  done
fi
phone_number_id=${SWITCHBOARD_PHONE_NUMBER_ID:-200000000000002}
app_secret=${SWITCHBOARD_APP_SECRET:-demo-app-secret-change-me}
verify_token=${SWITCHBOARD_VERIFY_TOKEN:-demo-verify-token}

# 1. The GET handshake Meta sends when the webhook is configured: must echo the challenge.
challenge=$RANDOM$RANDOM
answer=$(curl -sS --max-time 10 -G "$url" \
  --data-urlencode "hub.mode=subscribe" \
  --data-urlencode "hub.verify_token=$verify_token" \
  --data-urlencode "hub.challenge=$challenge")
if [ "$answer" != "$challenge" ]; then
  echo "send-test-webhook: handshake failed: expected '$challenge', got '$answer'" >&2
  exit 1
fi
echo "send-test-webhook: handshake OK"

# 2. A signed text message, shaped like Meta's (X-Hub-Signature-256: HMAC-SHA256 of the raw body).
now=$(date +%s)
wamid="wamid.TEST$(date +%s%N)"
body=$(printf '{"object":"whatsapp_business_account","entry":[{"id":"100000000000001","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"%s"},"contacts":[{"profile":{"name":"Test User"},"wa_id":"15550002222"}],"messages":[{"from":"15550002222","id":"%s","timestamp":"%s","type":"text","text":{"body":"Hello from send-test-webhook.sh"}}]}}]}]}' \
  "$phone_number_id" "$wamid" "$now")
signature=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$app_secret" -r | cut -d' ' -f1)
status=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -X POST "$url" \
  -H 'Content-Type: application/json' \
  -H "X-Hub-Signature-256: sha256=$signature" \
  --data-binary "$body")
if [ "$status" != 200 ]; then
  echo "send-test-webhook: POST answered $status, expected 200" >&2
  exit 1
fi
echo "send-test-webhook: signed webhook accepted (200), message $wamid"
