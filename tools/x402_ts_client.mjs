// The official x402 TypeScript client (@x402/fetch + @x402/evm, a viem account) paying a site, for
// tests/e2e/test_x402_ts.py and scripts/x402_interop.py. It lives under tools/ so that Node's ESM
// resolution finds tools/node_modules (installed by `npm ci --prefix tools`).
//
//   node tools/x402_ts_client.mjs < job.json
//
// job: {"key": "0x..", "network": "eip155:<id>", "asset": "0x..", "maxAmountPerPayment": "<atomic>",
//       "base": "http://127.0.0.1:<port>", "paths": ["/a", ...], "replay": "/b" (optional),
//       "timeoutMs": 60000 (optional)}
// Pays each path in turn with the SDK (one 402, one signed retry each), then, with `replay`, sends the
// first paid path's PAYMENT-SIGNATURE again, by hand, to the `replay` path. Prints one JSON document:
// {"payer", "paid": [{"path", "status", "scheme", "receipt", "bodyBytes"}], "replay": {"path", "status",
// "error", "receipt"} | null}. Exit 0 when it ran (the caller judges the outcome), 2 on a bad job, 3 on
// the time limit.

import { readFileSync } from "node:fs";
import { wrapFetchWithPayment, x402Client, x402HTTPClient } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { privateKeyToAccount } from "viem/accounts";

const job = JSON.parse(readFileSync(0, "utf8"));
for (const field of ["key", "network", "asset", "maxAmountPerPayment", "base", "paths"]) {
  if (job[field] === undefined) {
    process.stderr.write(`job field ${field} is missing\n`);
    process.exit(2);
  }
}
const limit = setTimeout(() => {
  process.stderr.write(`gave up after ${job.timeoutMs ?? 60000} ms\n`);
  process.exit(3);
}, job.timeoutMs ?? 60000);

const decode = (value) => (value ? JSON.parse(Buffer.from(value, "base64").toString("utf8")) : null);

const account = privateKeyToAccount(job.key);
const client = new x402Client()
  .register(job.network, new ExactEvmScheme(account))
  // DemoDollar is not in the SDK's default asset table: allow it, with a per-payment cap in atomic units.
  .setSpendControls({ allowedAssets: [{ network: job.network, asset: job.asset, maxAmountPerPayment: job.maxAmountPerPayment }] });
const http = new x402HTTPClient(client);

// The fetch the SDK uses, recording the PAYMENT-SIGNATURE of each retry it sends.
const sent = [];
async function recordingFetch(input, init) {
  const request = new Request(input, init);
  const header = request.headers.get("PAYMENT-SIGNATURE");
  if (header) sent.push({ url: request.url, header });
  return fetch(request);
}
const pay = wrapFetchWithPayment(recordingFetch, client);

const paid = [];
for (const path of job.paths) {
  const before = sent.length;
  const response = await pay(new URL(path, job.base).toString(), { headers: { Accept: "*/*" } });
  const body = new Uint8Array(await response.arrayBuffer());
  let receipt = null;
  try {
    receipt = http.getPaymentSettleResponse((name) => response.headers.get(name));
  } catch {
    receipt = null;
  }
  const signed = sent.length > before ? decode(sent[sent.length - 1].header) : null;
  paid.push({
    path,
    status: response.status,
    scheme: signed ? signed.accepted.scheme : null,
    authorization: signed ? signed.payload.authorization : null,
    receipt,
    refusal: response.status === 402 ? decode(response.headers.get("PAYMENT-REQUIRED")) : null,
    bodyBytes: body.length,
  });
}

let replay = null;
if (job.replay && sent.length) {
  const response = await fetch(new URL(job.replay, job.base), {
    headers: { "PAYMENT-SIGNATURE": sent[0].header, Accept: "*/*" },
  });
  await response.arrayBuffer();
  const required = decode(response.headers.get("PAYMENT-REQUIRED"));
  replay = {
    path: job.replay,
    status: response.status,
    error: required ? required.error : null,
    receipt: decode(response.headers.get("PAYMENT-RESPONSE")),
  };
}

clearTimeout(limit);
process.stdout.write(JSON.stringify({ payer: account.address, paid, replay }) + "\n");
