// The chains' own SDKs checking shardvault's work: `node prove.mjs <chain>`,
// or `node prove.mjs demo` (below) for a demo report's transactions.
//
// A two-step conversation over stdin/stdout, one JSON object per line:
//   in:  {"public_key": hex}                 the wallet key (from the MPC cluster)
//   out: {"address": …, "unsigned": [hex…]}  the SDK's address for the key, and
//                                            unsigned transactions the SDK built
//                                            (Cosmos: "prefixes", addresses on other chains)
//   in:  {"signed": [{"transaction": hex, "signature": hex, "id": …}…],
//         "message": {"text": hex, "signature": hex}}     a message signed in the chain's
//                                                         message format (Aptos: the AIP-62 full message)
//   out: {"ok": true, …}                     or exit 1 with {"error": …}
// The SDK, not shardvault, decides what is valid: it rebuilds what is signed,
// verifies the signature, recomputes the id, and (Solana) litesvm executes it.
import readline from "node:readline";

const chain = process.argv[2];
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const read = async () => JSON.parse((await lines.next()).value);
const say = (value) => process.stdout.write(JSON.stringify(value, (_, v) => (typeof v === "bigint" ? v.toString() : v)) + "\n");
const hex = (bytes) => Buffer.from(bytes).toString("hex");
const bytes = (text) => new Uint8Array(Buffer.from(text.replace(/^0x/, ""), "hex"));
function check(condition, what) {
  if (!condition) throw new Error(what);
}

const provers = { solana, aptos, sui, cosmos, tron };

async function solana(publicKey) {
  const kit = await import("@solana/kit");
  const { getTransferSolInstruction } = await import("@solana-program/system");
  const { LiteSVM, FailedTransactionMetadata } = await import("litesvm");
  const wallet = kit.getAddressDecoder().decode(publicKey);
  const recipient = kit.address("9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM");
  const svm = new LiteSVM();
  svm.airdrop(wallet, 10_000_000_000n);
  // An address lookup table holding the recipient, written into litesvm's
  // state in the lookup-table program's account layout (56-byte header:
  // type 1, deactivation slot u64::MAX, last extended slot, its start index,
  // no authority, padding; then the addresses).
  const table = kit.getAddressDecoder().decode(new Uint8Array(32).fill(0x7a));
  const header = new Uint8Array(56);
  const view = new DataView(header.buffer);
  view.setUint32(0, 1, true);
  view.setBigUint64(4, 0xffffffffffffffffn, true);
  const tableData = new Uint8Array([...header, ...kit.getAddressEncoder().encode(recipient)]);
  svm.setAccount({
    address: table,
    data: tableData,
    executable: false,
    lamports: 10_000_000_000n,
    programAddress: kit.address("AddressLookupTab1e1111111111111111111111111"),
    space: BigInt(tableData.length),
  });
  svm.warpToSlot(100n); // entries extended at slot 0 are active from slot 1
  const amounts = [1_000_000n, 2_500_000n, 4_000_000n];
  const versions = ["legacy", 0, 0];
  const unsigned = versions.map((version, i) => {
    const message = kit.pipe(
      kit.createTransactionMessage({ version }),
      (m) => kit.setTransactionMessageFeePayer(wallet, m),
      (m) => kit.setTransactionMessageLifetimeUsingBlockhash({ blockhash: svm.latestBlockhash(), lastValidBlockHeight: 1000n }, m),
      (m) =>
        kit.appendTransactionMessageInstruction(
          getTransferSolInstruction({ source: kit.createNoopSigner(wallet), destination: recipient, amount: amounts[i] }),
          m,
        ),
      // The third: a v0 message that loads the recipient from the table.
      (m) => (i === 2 ? kit.compressTransactionMessageUsingAddressLookupTables(m, { [table]: [recipient] }) : m),
    );
    return hex(kit.compileTransaction(message).messageBytes);
  });
  say({ address: wallet, unsigned });
  const answer = await read();
  const { signed } = answer;
  // The signed message is an off-chain message v0 (zero application domain, this key its one signer).
  const { compileOffchainMessageV0Envelope, offchainMessageApplicationDomain } = await import("@solana/offchain-messages");
  const text = Buffer.from(bytes(answer.message.text)).toString("utf8");
  const envelope = compileOffchainMessageV0Envelope({
    version: 0,
    applicationDomain: offchainMessageApplicationDomain("11111111111111111111111111111111"),
    content: { format: /[^\x20-\x7e]/.test(text) ? 1 : 0, text },
    requiredSignatories: [{ address: wallet }],
  });
  const verifier = await crypto.subtle.importKey("raw", publicKey, "Ed25519", false, ["verify"]);
  check(await crypto.subtle.verify("Ed25519", verifier, bytes(answer.message.signature), envelope.content), "the off-chain message signature does not verify");
  const results = [];
  for (const [i, item] of signed.entries()) {
    const tx = kit.getTransactionDecoder().decode(bytes(item.transaction));
    check(hex(tx.messageBytes) === unsigned[i], "the wire transaction carries a different message");
    check(kit.getSignatureFromTransaction(tx) === item.id, "the transaction id is not the signature");
    const result = svm.sendTransaction(tx);
    if (result instanceof FailedTransactionMetadata) throw new Error(`litesvm refused: ${result.err()} ${result.meta().logs()}`);
    results.push(item.id);
  }
  const balance = svm.getBalance(recipient);
  check(balance === amounts[0] + amounts[1] + amounts[2], `recipient balance ${balance}`);
  return { executed: results, recipient_balance: balance };
}

async function aptos(publicKey) {
  const sdk = await import("@aptos-labs/ts-sdk");
  const key = new sdk.Ed25519PublicKey(publicKey);
  const wallet = key.authKey().derivedAddress();
  const recipient = sdk.AccountAddress.from("0x" + "ab".repeat(32));
  const raw = new sdk.RawTransaction(
    wallet,
    7n,
    new sdk.TransactionPayloadEntryFunction(
      sdk.EntryFunction.build("0x1::aptos_account", "transfer", [], [recipient, new sdk.U64(123_456n)]),
    ),
    2_000n,
    100n,
    1_900_000_000n,
    new sdk.ChainId(2),
  );
  say({ address: wallet.toStringLong(), unsigned: [hex(raw.bcsToBytes())] });
  const answer = await read();
  const [item] = answer.signed;
  const fullMessage = bytes(answer.message.text);
  check(Buffer.from(fullMessage).toString("utf8").startsWith("APTOS\n"), "not an AIP-62 full message");
  check(key.verifySignature({ message: fullMessage, signature: new sdk.Ed25519Signature(bytes(answer.message.signature)) }), "the SDK rejects the message signature");
  const signed = sdk.SignedTransaction.deserialize(new sdk.Deserializer(bytes(item.transaction)));
  check(hex(signed.raw_txn.bcsToBytes()) === hex(raw.bcsToBytes()), "the signed transaction carries a different RawTransaction");
  const auth = signed.authenticator;
  check(auth instanceof sdk.TransactionAuthenticatorEd25519, "not a single Ed25519 authenticator");
  check(hex(auth.public_key.toUint8Array()) === hex(publicKey), "the authenticator names another key");
  const message = sdk.generateSigningMessageForTransaction(new sdk.SimpleTransaction(raw));
  check(key.verifySignature({ message, signature: auth.signature }), "the SDK rejects the signature");
  const hash = sdk.generateUserTransactionHash({
    transaction: new sdk.SimpleTransaction(raw),
    senderAuthenticator: new sdk.AccountAuthenticatorEd25519(auth.public_key, auth.signature),
  });
  check(hash === item.id, `the SDK's hash is ${hash}`);
  return { hash };
}

async function sui(publicKey) {
  const { Ed25519PublicKey } = await import("@mysten/sui/keypairs/ed25519");
  const { Transaction, TransactionDataBuilder } = await import("@mysten/sui/transactions");
  const { toBase64 } = await import("@mysten/sui/utils");
  const key = new Ed25519PublicKey(publicKey);
  const wallet = key.toSuiAddress();
  const tx = new Transaction();
  tx.setSender(wallet);
  tx.setGasPrice(1_000);
  tx.setGasBudget(5_000_000);
  tx.setGasPayment([{ objectId: "0x" + "5a".repeat(32), version: "42", digest: "4vJ9JU1bJJE96FWSJKvHsmmFADCg4gpZQff4P3bkLKi" }]);
  const [coin] = tx.splitCoins(tx.gas, [tx.pure.u64(1_000_000n)]);
  tx.transferObjects([coin], tx.pure.address("0x" + "cd".repeat(32)));
  const data = await tx.build();
  say({ address: wallet, unsigned: [hex(data)] });
  const answer = await read();
  const [item] = answer.signed;
  check(item.transaction === hex(data), "the transaction bytes changed");
  const { text, signature } = answer.message;
  check(await key.verifyPersonalMessage(bytes(text), toBase64(bytes(signature))), "the SDK rejects the personal message");
  check(await key.verifyTransaction(data, toBase64(bytes(item.signature))), "the SDK rejects the signature");
  const digest = TransactionDataBuilder.getDigestFromBytes(data);
  check(digest === item.id, `the SDK's digest is ${digest}`);
  return { digest };
}

async function cosmos(publicKey) {
  const { Registry, encodePubkey, makeAuthInfoBytes, makeSignDoc, makeSignBytes } = await import("@cosmjs/proto-signing");
  const { encodeSecp256k1Pubkey, pubkeyToAddress } = await import("@cosmjs/amino");
  const { Secp256k1, Secp256k1Signature, sha256 } = await import("@cosmjs/crypto");
  const { toHex } = await import("@cosmjs/encoding");
  const { MsgSend } = await import("cosmjs-types/cosmos/bank/v1beta1/tx");
  const { TxRaw } = await import("cosmjs-types/cosmos/tx/v1beta1/tx");
  const amino = encodeSecp256k1Pubkey(publicKey);
  const wallet = pubkeyToAddress(amino, "cosmos");
  const registry = new Registry([["/cosmos.bank.v1beta1.MsgSend", MsgSend]]);
  const bodyBytes = registry.encode({
    typeUrl: "/cosmos.tx.v1beta1.TxBody",
    value: {
      messages: [
        {
          typeUrl: "/cosmos.bank.v1beta1.MsgSend",
          value: { fromAddress: wallet, toAddress: "cosmos1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5lzv7xu", amount: [{ denom: "uatom", amount: "1500" }] },
        },
      ],
      memo: "shardvault",
    },
  });
  const authInfoBytes = makeAuthInfoBytes([{ pubkey: encodePubkey(amino), sequence: 3 }], [{ denom: "uatom", amount: "5000" }], 200_000);
  const signBytes = makeSignBytes(makeSignDoc(bodyBytes, authInfoBytes, "cosmoshub-4", 12));
  const prefixes = Object.fromEntries(["osmo", "juno", "celestia"].map((p) => [p, pubkeyToAddress(amino, p)]));
  say({ address: wallet, unsigned: [hex(signBytes)], prefixes });
  const answer = await read();
  const [item] = answer.signed;
  // ADR-036, as Keplr's verifyADR36Amino checks it: one sign/MsgSignData in an amino sign doc.
  const { makeSignDoc: makeAminoSignDoc, serializeSignDoc } = await import("@cosmjs/amino");
  const { toBase64 } = await import("@cosmjs/encoding");
  const adr036 = makeAminoSignDoc(
    [{ type: "sign/MsgSignData", value: { signer: wallet, data: toBase64(bytes(answer.message.text)) } }],
    { gas: "0", amount: [] }, "", "", 0, 0,
  );
  const messageSignature = Secp256k1Signature.fromFixedLength(bytes(answer.message.signature));
  check(await Secp256k1.verifySignature(messageSignature, sha256(serializeSignDoc(adr036)), publicKey), "cosmjs rejects the ADR-036 signature");
  const raw = TxRaw.decode(bytes(item.transaction));
  check(hex(raw.bodyBytes) === hex(bodyBytes) && hex(raw.authInfoBytes) === hex(authInfoBytes), "TxRaw carries other bytes");
  const signature = Secp256k1Signature.fromFixedLength(raw.signatures[0]);
  check(await Secp256k1.verifySignature(signature, sha256(signBytes), publicKey), "cosmjs rejects the signature");
  const hash = toHex(sha256(bytes(item.transaction))).toUpperCase();
  check(hash === item.id, `the tx hash is ${hash}`);
  return { hash };
}

async function tron(publicKey) {
  const { utils } = await import("tronweb");
  const uncompressed = utils.ethersUtils.SigningKey.computePublicKey(publicKey, false);
  const wallet = utils.crypto.getBase58CheckAddress(utils.crypto.computeAddress(utils.code.hexStr2byteArray(uncompressed.slice(2))));
  const recipient = "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8";
  const tx = {
    visible: true,
    raw_data: {
      contract: [
        {
          parameter: {
            value: { amount: 2_000_000, owner_address: wallet, to_address: recipient },
            type_url: "type.googleapis.com/protocol.TransferContract",
          },
          type: "TransferContract",
        },
      ],
      ref_block_bytes: "0a1b",
      ref_block_hash: "00112233aabbccdd",
      expiration: 1_900_000_060_000,
      timestamp: 1_900_000_000_000,
    },
  };
  // A TRC-20 transfer (USDT's contract) of 5 000 000 units to the same recipient.
  const usdt = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";
  const data =
    "a9059cbb" +
    utils.address.toHex(recipient).slice(2).padStart(64, "0") +
    (5_000_000).toString(16).padStart(64, "0");
  const trc20 = {
    visible: true,
    raw_data: {
      ...tx.raw_data,
      contract: [
        {
          parameter: {
            value: { owner_address: wallet, contract_address: usdt, data },
            type_url: "type.googleapis.com/protocol.TriggerSmartContract",
          },
          type: "TriggerSmartContract",
        },
      ],
      fee_limit: 30_000_000,
    },
  };
  const pbs = [tx, trc20].map((t) => utils.transaction.txJsonToPb(t));
  const raws = pbs.map((pb) => utils.transaction.txPbToRawDataHex(pb).toLowerCase());
  say({ address: wallet, unsigned: raws });
  const answer = await read();
  const messageSigner = utils.message.verifyMessage(bytes(answer.message.text), "0x" + answer.message.signature);
  check(messageSigner === wallet, `TronWeb recovers the message signer as ${messageSigner}`);
  const txids = [];
  for (const [i, item] of answer.signed.entries()) {
    const txid = utils.transaction.txPbToTxID(pbs[i]).replace(/^0x/, "");
    check(item.id === txid, `TronWeb's txid is ${txid}`);
    // TronWeb's own protobuf classes decode the signed Transaction.
    const signedPb = globalThis.TronWebProto.Transaction.deserializeBinary(bytes(item.transaction));
    check(hex(signedPb.getRawData().serializeBinary()) === raws[i], "the signed Transaction carries another raw_data");
    const [signature] = signedPb.getSignatureList_asU8();
    check(hex(signature) === item.signature, "the signed Transaction carries another signature");
    const signer = utils.address.fromHex(utils.crypto.ecRecover(txid, item.signature));
    check(signer === wallet, `TronWeb recovers ${signer}`);
    txids.push(txid);
  }
  return { txids };
}

// `node prove.mjs demo`: a `shardvault demo --json` report on stdin; every
// transaction the networked cluster signed is checked by its chain's
// software (Bitcoin and Litecoin are checked by Bitcoin Core's interpreter in
// the Rust tests). Solana transfers are executed by litesvm (with the made-up
// blockhash accepted), the others' signatures verified over what the SDK
// says is signed, their ids recomputed, their senders derived by the SDK.
async function demo() {
  let text = "";
  for (let line = await lines.next(); !line.done; line = await lines.next()) text += line.value + "\n";
  const report = JSON.parse(text);
  const checked = {};
  for (const key of report.keys) {
    for (const t of key.transactions ?? []) {
      const check_one = demoCheckers[t.chain];
      if (!check_one) continue;
      await check_one(t);
      checked[t.chain] = (checked[t.chain] ?? 0) + 1;
    }
  }
  return { checked };
}

const demoCheckers = {
  async ethereum(t) {
    const { Transaction } = await import("ethers");
    const tx = Transaction.from("0x" + t.transaction);
    check(tx.from === t.address, `ethers recovers ${tx.from}, not ${t.address}`);
    check(tx.hash === t.id, `ethers hashes it to ${tx.hash}`);
    check(tx.unsignedSerialized === "0x" + t.unsigned, "ethers sees another unsigned transaction");
  },
  async solana(t) {
    const kit = await import("@solana/kit");
    const { LiteSVM, FailedTransactionMetadata } = await import("litesvm");
    const tx = kit.getTransactionDecoder().decode(bytes(t.transaction));
    check(hex(tx.messageBytes) === t.unsigned, "the wire transaction carries another message");
    check(kit.getSignatureFromTransaction(tx) === t.id, "the id is not the signature");
    const svm = new LiteSVM().withBlockhashCheck(false);
    svm.airdrop(kit.address(t.address), 10_000_000_000n);
    const result = svm.sendTransaction(tx);
    if (result instanceof FailedTransactionMetadata) throw new Error(`litesvm refused: ${result.err()}`);
    check(svm.getBalance(kit.address(t.summary.to)) === BigInt(t.summary.amount), "the recipient did not get the amount");
  },
  async aptos(t) {
    const sdk = await import("@aptos-labs/ts-sdk");
    const signed = sdk.SignedTransaction.deserialize(new sdk.Deserializer(bytes(t.transaction)));
    check(hex(signed.raw_txn.bcsToBytes()) === t.unsigned, "another RawTransaction");
    const auth = signed.authenticator;
    const key = auth.public_key;
    check(key.authKey().derivedAddress().toStringLong() === t.address, "the authenticator's key is not the sender's");
    const message = sdk.generateSigningMessageForTransaction(new sdk.SimpleTransaction(signed.raw_txn));
    check(key.verifySignature({ message, signature: auth.signature }), "the SDK rejects the signature");
    const hash = sdk.generateUserTransactionHash({
      transaction: new sdk.SimpleTransaction(signed.raw_txn),
      senderAuthenticator: new sdk.AccountAuthenticatorEd25519(key, auth.signature),
    });
    check(hash === t.id, `the SDK's hash is ${hash}`);
  },
  async sui(t) {
    const { parseSerializedSignature } = await import("@mysten/sui/cryptography");
    const { Ed25519PublicKey } = await import("@mysten/sui/keypairs/ed25519");
    const { TransactionDataBuilder } = await import("@mysten/sui/transactions");
    const { toBase64 } = await import("@mysten/sui/utils");
    const parsed = parseSerializedSignature(toBase64(bytes(t.signature)));
    const key = new Ed25519PublicKey(parsed.publicKey);
    check(key.toSuiAddress() === t.address, "the signature's key is not the sender's");
    check(await key.verifyTransaction(bytes(t.transaction), toBase64(bytes(t.signature))), "the SDK rejects the signature");
    check(TransactionDataBuilder.getDigestFromBytes(bytes(t.transaction)) === t.id, "another digest");
  },
  async cosmos(t) {
    const { decodePubkey } = await import("@cosmjs/proto-signing");
    const { pubkeyToAddress } = await import("@cosmjs/amino");
    const { Secp256k1, Secp256k1Signature, sha256 } = await import("@cosmjs/crypto");
    const { toHex, fromBase64 } = await import("@cosmjs/encoding");
    const { TxRaw, AuthInfo, SignDoc } = await import("cosmjs-types/cosmos/tx/v1beta1/tx");
    const raw = TxRaw.decode(bytes(t.transaction));
    const doc = SignDoc.decode(bytes(t.unsigned));
    check(hex(raw.bodyBytes) === hex(doc.bodyBytes) && hex(raw.authInfoBytes) === hex(doc.authInfoBytes), "TxRaw carries other bytes");
    const pubkey = decodePubkey(AuthInfo.decode(raw.authInfoBytes).signerInfos[0].publicKey);
    check(pubkeyToAddress(pubkey, "cosmos") === t.address, "the signer is not the sender");
    const signature = Secp256k1Signature.fromFixedLength(raw.signatures[0]);
    check(await Secp256k1.verifySignature(signature, sha256(bytes(t.unsigned)), fromBase64(pubkey.value)), "cosmjs rejects the signature");
    check(toHex(sha256(bytes(t.transaction))).toUpperCase() === t.id, "another tx hash");
  },
  async tron(t) {
    const { utils } = await import("tronweb");
    const signedPb = globalThis.TronWebProto?.Transaction ?? null;
    const txid = hex(utils.crypto.SHA256(Array.from(bytes(t.unsigned))));
    check(txid === t.id, `TronWeb's txid is ${txid}`);
    const pb = signedPb.deserializeBinary(bytes(t.transaction));
    check(hex(pb.getRawData().serializeBinary()) === t.unsigned, "another raw_data");
    const [signature] = pb.getSignatureList_asU8();
    const signer = utils.address.fromHex(utils.crypto.ecRecover(txid, hex(signature)));
    check(signer === t.address, `TronWeb recovers ${signer}`);
  },
};

try {
  if (chain === "demo") {
    say({ ok: true, ...(await demo()) });
    process.exit(0);
  }
  const prove = provers[chain];
  if (!prove) throw new Error(`unknown chain ${chain}`);
  const { public_key } = await read();
  say({ ok: true, ...(await prove(bytes(public_key))) });
  process.exit(0);
} catch (error) {
  say({ error: String(error?.stack ?? error) });
  process.exit(1);
}
