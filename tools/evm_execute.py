"""Execute signed EVM transactions on py-evm (through eth-tester).

Reads JSON from stdin: {"chain_id": 1, "sender": "0x…", "to": "0x…", "raw": ["0x…", …]}.
Funds `sender` from a test account, submits each raw transaction, requires a
successful receipt for each, and prints {"recipient_gain_wei": …, "senders": […]}.
Used by the test `evm_execution` (crates/chains/tests); an independent EVM,
not shardvault's code, decides whether the transactions are valid.
"""
import json
import sys

from eth_tester import EthereumTester, PyEVMBackend


def main() -> None:
    request = json.load(sys.stdin)
    backend = PyEVMBackend()
    # eth-tester fixes its own chain id; run its chain as the requested one so
    # a transaction made for that chain executes unchanged.
    type(backend.chain).chain_id = request["chain_id"]
    tester = EthereumTester(backend)
    funder = tester.get_accounts()[0]
    tester.send_transaction({"from": funder, "to": request["sender"], "value": 10**18, "gas": 21000,
                             "max_fee_per_gas": 10**11, "max_priority_fee_per_gas": 10**9})
    before = tester.get_balance(request["to"])
    senders = []
    for raw in request["raw"]:
        tx_hash = tester.send_raw_transaction(raw)
        receipt = tester.get_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise SystemExit(f"transaction {tx_hash} failed: {receipt}")
        senders.append(tester.get_transaction_by_hash(tx_hash)["from"])
    print(json.dumps({"recipient_gain_wei": tester.get_balance(request["to"]) - before, "senders": senders}))


if __name__ == "__main__":
    main()
