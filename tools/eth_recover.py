"""Recover the signer of EIP-191 and EIP-712 signatures with eth_account.

Reads a JSON list from stdin: [{"kind": "eip191", "message_hex": "…", "signature": "<65 bytes hex: r‖s‖v>"},
{"kind": "eip712", "typed_data": {…}, "signature": "…"}] and prints the recovered addresses as a JSON list.
Used by the test `evm_execution` (crates/chains/tests).
"""
import json
import sys

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data


def main() -> None:
    recovered = []
    for check in json.load(sys.stdin):
        if check["kind"] == "eip191":
            message = encode_defunct(hexstr=check["message_hex"])
        else:
            message = encode_typed_data(full_message=check["typed_data"])
        recovered.append(Account.recover_message(message, signature=bytes.fromhex(check["signature"])))
    print(json.dumps(recovered))


if __name__ == "__main__":
    main()
