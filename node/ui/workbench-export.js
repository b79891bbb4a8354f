// Exports of the compliance workbench, made in the browser and saved as files (Blob downloads):
// the disclosures shown as CSV (RFC 4180, UTF-8, CRLF; a cell that a spreadsheet would run as a
// formula is prefixed with an apostrophe), and the node's FHIR R4 AuditEvent Bundle of the
// period (GET .../disclosures?format=fhir) narrowed to the same rows.

const FORMULA_START = /^[=+\-@\t\r]/;
export const SYS_TX = "urn:medledger:tx";

function csvCell(value) {
  let text = value === null || value === undefined ? "" : String(value);
  if (FORMULA_START.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll("\"", "\"\"")}"` : text;
}

/** CSV text of `rows` (arrays) under `head`. */
export function toCsv(head, rows) {
  return [head, ...rows].map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n";
}

/** Save `text` as a file named `name` (the browser's download). */
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  // the download has taken the blob's bytes once click() returns; free the URL after this task
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

/** The ledger transaction an AuditEvent describes (its urn:medledger:tx entity). */
function eventTx(resource) {
  for (const entity of resource.entity || []) {
    const id = entity.what && entity.what.identifier;
    if (id && id.system === SYS_TX) return id.value;
  }
  return null;
}

/** The Bundle with only the AuditEvents of the transactions in `txs` (a Set), in order. */
export function narrowBundle(bundle, txs) {
  const entry = (bundle.entry || []).filter((e) => e.resource && txs.has(eventTx(e.resource)));
  return { ...bundle, timestamp: new Date().toISOString(), entry };
}
