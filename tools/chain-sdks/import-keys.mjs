// Import the raw private keys `shardvault recover` prints into the chains'
// own wallet libraries: `node import-keys.mjs`.
//
// in (stdin):   [{"chain": "tron" | "cosmos", "key": "0x…", "prefix": "osmo"?}, …]
// out (stdout): ["the address the library derives from each key", …]
//
// TronWeb imports a key with TronWeb.address.fromPrivateKey (strict, so a key
// it refuses is an error here); cosmjs as its wallets do, with
// DirectSecp256k1Wallet.fromKey and the bech32 prefix (default "cosmos").
// Used by the test `recover` (crates/cli/tests).
import { TronWeb } from "tronweb";
import { DirectSecp256k1Wallet } from "@cosmjs/proto-signing";

async function address({ chain, key, prefix }) {
  const raw = key.replace(/^0x/, "");
  if (chain === "tron") {
    const address = TronWeb.address.fromPrivateKey(raw, true);
    if (!address) throw new Error("TronWeb refuses the key");
    return address;
  }
  if (chain === "cosmos") {
    const wallet = await DirectSecp256k1Wallet.fromKey(new Uint8Array(Buffer.from(raw, "hex")), prefix ?? "cosmos");
    const [account] = await wallet.getAccounts();
    return account.address;
  }
  throw new Error(`no wallet library for ${chain}`);
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const checks = JSON.parse(Buffer.concat(chunks).toString());
process.stdout.write(JSON.stringify(await Promise.all(checks.map(address))) + "\n");
