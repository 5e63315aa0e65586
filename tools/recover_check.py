"""Import the private keys `shardvault recover` prints with wallets' own libraries.

Reads a JSON list from stdin, each {"kind": "wif-p2wpkh" | "wif-p2tr" | "ltc-wif-p2wpkh" | "eth",
"key": "…", "network": "bitcoin" | "testnet" | …}, and prints as a JSON list the address each
library derives from the key: embit for Bitcoin WIFs (P2WPKH, and P2TR with the BIP86 tweak embit
applies to the internal key, as a tr(KEY) descriptor does), pycoin for Litecoin WIFs (its own
Litecoin network definitions: WIF prefix, bech32 prefix), eth_account for 0x-hex keys.
The library must also accept the key's network: a mainnet WIF is not a testnet one.
Used by the test `recover` (crates/cli/tests).
"""
import json
import sys

from embit import ec, script
from embit.networks import NETWORKS
from eth_account import Account
from pycoin.symbols.ltc import network as LITECOIN
from pycoin.symbols.xlt import network as LITECOIN_TESTNET

EMBIT_NETWORK = {"bitcoin": "main", "mainnet": "main", "testnet": "test", "signet": "signet", "regtest": "regtest"}
PYCOIN_NETWORK = {"mainnet": LITECOIN, "testnet": LITECOIN_TESTNET}


def litecoin_address(check):
    network = PYCOIN_NETWORK[check["network"]]
    key = network.parse.wif(check["key"])
    if key is None:
        raise ValueError(f"pycoin reads no {network.network_name} {check['network']} WIF")
    if not key.is_compressed():
        raise ValueError("the WIF is of an uncompressed key")
    return network.address.for_p2pkh_wit(key.hash160())


def address(check):
    if check["kind"] == "eth":
        return Account.from_key(check["key"]).address
    if check["kind"] == "ltc-wif-p2wpkh":
        return litecoin_address(check)
    network = NETWORKS[EMBIT_NETWORK[check["network"]]]
    key = ec.PrivateKey.from_wif(check["key"])
    if key.network["wif"] != network["wif"]:
        raise ValueError(f"the WIF is for {key.network['name']}, not {network['name']}")
    if not key.compressed:
        raise ValueError("the WIF is of an uncompressed key")
    public = key.get_public_key()
    if check["kind"] == "wif-p2wpkh":
        return script.p2wpkh(public).address(network)
    return script.p2tr(public).address(network)


def main() -> None:
    print(json.dumps([address(check) for check in json.load(sys.stdin)]))


if __name__ == "__main__":
    main()
