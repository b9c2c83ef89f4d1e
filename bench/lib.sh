# Sourced by bench/run.sh and bench/soak.sh: what both set up in "$work" with "$bin/custodian".
#   bench_begin NAME: installs what is missing, builds custodian in release mode, sets bin and work (a fresh
#   /tmp/custodian-NAME-XXXXXX, removed at exit, with the agent in agent_pid stopped).
bench_begin() {
    scripts/setup
    swift build -c release --product custodian >/dev/null
    bin=$PWD/.build/release
    work=$(mktemp -d "/tmp/custodian-$1-XXXXXX")
    agent_pid=""
    trap bench_cleanup EXIT
}
bench_cleanup() {
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
    rm -rf "$work"
}
#   bench_prepare: key A of the vectors sealed with the cheap (interactive) KDF in key (passphrase in passphrase),
#   a policy that allows the kit's close and the V1 create that sets its session up (policy.toml), that create
#   (v1.json), and the kit's close message with {{id}} and {{ts}} placeholders (close.txt).
bench_prepare() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["private_key"])' Tests/Vectors/keys/key_A.json >"$work/key.hex"
    printf 'benchmark\n' >"$work/passphrase"
    chmod 600 "$work/key.hex" "$work/passphrase"
    "$bin/custodian" key import --key-file "$work/key" --private-key-file "$work/key.hex" \
        --passphrase-file "$work/passphrase" --kdf interactive >/dev/null
    cat >"$work/policy.toml" <<'POLICY'
version = 1
[requests]
methods = ["create_app_session", "submit_app_state", "close_app_session"]
max_age_ms = 100000000000000
[sessions]
[assets.usdc]
decimals = 6
[counterparties]
allow = []
[velocity]
window_s = 86400
max_own_loss = {}
POLICY
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["req"], end="")' Tests/Vectors/sign/create_v1.json >"$work/v1.json"
    printf '%s' '{"req":[{{id}},"close_app_session",{"app_session_id":"0x3186abf9003acc50f21f6436ec0e92a3ca67e54bc77e07c0b0f44d841cb419af","allocations":[{"participant":"0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638","asset":"usdc","amount":"100"},{"participant":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","asset":"usdc","amount":"50"}]},{{ts}}],"sig":[]}' >"$work/close.txt"
}
