"""An Ethereum implementation that is not custodian's: recovers signers with eth-keys and eth-account.

    oracle.py recover REQ_FILE SIGNATURE   prints the EIP-55 address that signed keccak256(file bytes)
    oracle.py checkpoint HEAD SIGNATURE    prints the address of an EIP-191 personal_sign over the 32 bytes of HEAD
                                           (checkpoints written before they were labelled)
    oracle.py checkpoint-text TEXT SIG     prints the address of an EIP-191 personal_sign over the UTF-8 TEXT
    oracle.py v1-frame FILE                prints the address that signed a v1 frame: the state's ABI hash computed
                                           here with eth-abi from the frame's values, the last quorum_sigs entry
                                           recovered over its EIP-191 digest (eth-keys)
    oracle.py v1-hashes FILE               reads a JSON list of v1 frames, prints each one's ABI hash (eth-abi)
    oracle.py v1 HASH QUORUM_SIG           prints the address that signed a v1 state hash: the quorum signature's
                                           type byte 0xa1 stripped, then EIP-191 over the 32 bytes of HASH (eth-keys)
    oracle.py channel-state FILE DECIMALS  prints the address whose user_sig (0x00 + 65 bytes) signed the v1 channel
                                           state in FILE: its 640-byte message built here with eth-abi from the
                                           state's values (PROTOCOL-v1-channels §2), EIP-191 over the whole message
                                           (eth-account)
    oracle.py channel-sign KEY FILE DECIMALS  prints 0x00 + KEY's EIP-191 signature over the state's message (the
                                           node's node_sig, made by eth-account)
    oracle.py channel-challenge FILE DECIMALS SIG  prints the address whose SIG (0x00 + 65 bytes) signed the
                                           672-byte challenge of the state in FILE (eth-abi, eth-account)
    oracle.py address KEY                  prints the EIP-55 address of a private key
    oracle.py encrypt KEY PASSWORD KDF N   prints a V3 keystore of KEY written by eth-account (KDF scrypt or pbkdf2,
                                           N its work factor)
"""
import json
import sys
from decimal import Decimal

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys import keys
from eth_keys.constants import SECPK1_N
from eth_utils import keccak


def recover(path, signature_hex):
    data = open(path, "rb").read()
    signature = bytes.fromhex(signature_hex[2:] if signature_hex.startswith("0x") else signature_hex)
    assert len(signature) == 65, "a signature is 65 bytes"
    v = signature[64] - 27 if signature[64] >= 27 else signature[64]
    r = int.from_bytes(signature[0:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    assert s <= SECPK1_N // 2, "high-S signature"
    public_key = keys.Signature(vrs=(v, r, s)).recover_public_key_from_msg_hash(keccak(data))
    return public_key.to_checksum_address()


def recover_v1(hash_hex, quorum_sig):
    raw = bytes.fromhex(quorum_sig[2:])
    assert len(raw) == 66 and raw[0] == 0xA1, "a wallet quorum signature is 0xa1 + 65 bytes"
    signature = raw[1:]
    v = signature[64] - 27
    assert v in (0, 1), "v is 27 or 28"
    r = int.from_bytes(signature[0:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    assert s <= SECPK1_N // 2, "high-S signature"
    digest = keccak(b"\x19Ethereum Signed Message:\n32" + bytes.fromhex(hash_hex[2:]))
    return keys.Signature(vrs=(v, r, s)).recover_public_key_from_msg_hash(digest).to_checksum_address()


def plain(amount):
    """Go's shopspring Decimal.String() of a wire amount: plain notation, trailing fractional zeros trimmed."""
    text = format(Decimal(amount), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def v1_hash(frame):
    from eth_abi import encode
    method, payload = frame[2], frame[3]
    if method == "app_sessions.v1.create_app_session":
        d = payload["definition"]
        values = [d["application_id"], [(p["wallet_address"], p["signature_weight"]) for p in d["participants"]],
                  d["quorum"], int(d["nonce"]), payload.get("session_data", "")]
        return keccak(encode(["string", "(address,uint8)[]", "uint8", "uint64", "string"], values))
    u = payload["app_state_update"]
    allocations = [(a["participant"], a["asset"], plain(a["amount"])) for a in u["allocations"]]
    values = [bytes.fromhex(u["app_session_id"][2:]), u["intent"], int(u["version"]), allocations,
              u.get("session_data", "")]
    return keccak(encode(["bytes32", "uint8", "uint64", "(address,string,string)[]", "string"], values))


def channel_message(state, decimals, suffix=b""):
    """PackState (PROTOCOL-v1-channels §2) from a StateV1's values, with eth-abi; with suffix b"challenge",
    PackChallengeState (§3.2)."""
    from eth_abi import encode
    t = state["transition"]

    def hex_to_hash(text):
        # go-ethereum's HexToHash: 0x dropped, odd length padded, last 32 bytes kept, left-padded.
        digits = text[2:] if text[:2].lower() == "0x" else text
        if len(digits) % 2:
            digits = "0" + digits
        return bytes.fromhex(digits)[-32:].rjust(32, b"\0")

    account = t["account_id"]
    account_bytes = bytes.fromhex(account[2:]).rjust(32, b"\0") if len(account) == 42 else hex_to_hash(account)
    transition_hash = keccak(encode(["(uint8,bytes32,bytes32,string)"],
                                    [(t["type"], hex_to_hash(t["tx_id"]), account_bytes, plain(t["amount"]))]))
    intent = {10: 2, 11: 3, 200: 1}.get(t["type"], 0)
    scale = Decimal(10) ** decimals
    h = state["home_ledger"]

    def units(value):
        amount = Decimal(value) * scale
        assert amount == amount.to_integral_value(), "an amount beyond the token's decimals"
        return int(amount)

    home = (int(h["blockchain_id"]), h["token_address"], decimals, units(h["user_balance"]),
            units(h["user_net_flow"]), units(h["node_balance"]), units(h["node_net_flow"]))
    none = (0, "0x" + "00" * 20, 0, 0, 0, 0, 0)
    ledger = "(uint64,address,uint8,uint256,int256,uint256,int256)"
    data = encode(["uint64", "uint8", "bytes32", ledger, ledger],
                  [int(state["version"]), intent, transition_hash, home, none])
    message = encode(["bytes32", "bytes"], [bytes.fromhex(state["home_channel_id"][2:]), data + suffix])
    assert len(message) == (672 if suffix else 640), "a channel state's message is 640 bytes, a challenge's 672"
    return message


def channel_signer(state, decimals, signature=None, suffix=b""):
    raw = bytes.fromhex((signature or state["user_sig"])[2:])
    assert len(raw) == 66 and raw[0] == 0x00, "a user_sig is 0x00 + 65 bytes"
    assert raw[65] in (27, 28), "v is 27 or 28"
    assert int.from_bytes(raw[33:65], "big") <= SECPK1_N // 2, "high-S signature"
    return Account.recover_message(encode_defunct(primitive=channel_message(state, decimals, suffix)),
                                   signature=raw[1:])


def main():
    if sys.argv[1] == "recover":
        print(recover(sys.argv[2], sys.argv[3]))
    elif sys.argv[1] == "encrypt":
        print(json.dumps(Account.encrypt(sys.argv[2], sys.argv[3], kdf=sys.argv[4], iterations=int(sys.argv[5]))))
    elif sys.argv[1] == "checkpoint":
        print(Account.recover_message(encode_defunct(hexstr=sys.argv[2]), signature=sys.argv[3]))
    elif sys.argv[1] == "checkpoint-text":
        print(Account.recover_message(encode_defunct(text=sys.argv[2]), signature=sys.argv[3]))
    elif sys.argv[1] == "v1-frame":
        frame = json.loads(open(sys.argv[2], encoding="utf-8").read())
        print(recover_v1("0x" + v1_hash(frame).hex(), frame[3]["quorum_sigs"][-1]))
    elif sys.argv[1] == "channel-state":
        print(channel_signer(json.loads(open(sys.argv[2], encoding="utf-8").read()), int(sys.argv[3])))
    elif sys.argv[1] == "channel-challenge":
        state = json.loads(open(sys.argv[2], encoding="utf-8").read())
        print(channel_signer(state, int(sys.argv[3]), sys.argv[4], b"challenge"))
    elif sys.argv[1] == "channel-sign":
        state = json.loads(open(sys.argv[3], encoding="utf-8").read())
        signed = Account.sign_message(encode_defunct(primitive=channel_message(state, int(sys.argv[4]))),
                                      private_key=sys.argv[2])
        print("0x00" + bytes(signed.signature).hex())
    elif sys.argv[1] == "address":
        print(Account.from_key(sys.argv[2]).address)
    elif sys.argv[1] == "v1-hashes":
        for frame in json.loads(open(sys.argv[2], encoding="utf-8").read()):
            print("0x" + v1_hash(frame).hex())
    elif sys.argv[1] == "v1":
        print(recover_v1(sys.argv[2], sys.argv[3]))
    else:
        sys.exit("unknown command")


if __name__ == "__main__":
    main()
