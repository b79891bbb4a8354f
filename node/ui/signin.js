// The sign-in form shared by the patient and compliance pages: read the chosen key file,
// open it (with the passphrase when it is encrypted) and hand the Signer to the page.

import { $, el, fetchJSON, replace, showError } from "./common.js";
import { Signer } from "./keys.js";

/** Wire the #signin-form; `onSignedIn(signer, identity)` gets the signer and its ledger identity.
 *  `roles` lists the ledger roles allowed on this page; `withTrialKeys` keeps what the patient
 *  page needs for trial invitations (signer.trials, keys.js TrialKeys). */
export function signInForm(roles, onSignedIn, { withTrialKeys = false } = {}) {
  const form = $("#signin-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("#keyfile").files[0];
    const button = form.querySelector("button");
    replace("#signin-error");
    if (!file) { replace("#signin-error", el("div", { class: "error" }, "choose your key file first")); return; }
    button.disabled = true;
    button.textContent = "Signing in…";
    try {
      const signer = await Signer.fromKeyFile(await file.text(), $("#passphrase").value, { withTrialKeys });
      $("#passphrase").value = "";
      $("#keyfile").value = "";
      let identity;
      try {
        identity = await fetchJSON(`/v1/identities/${signer.id}`);
      } catch (exc) {
        if (exc.code === "unknown_identity") throw new Error("this key is not registered on the ledger");
        throw exc;
      }
      if (!roles.includes(identity.role)) throw new Error(`this key belongs to a ${identity.role}; this page is for a ${roles.join(" or ")}`);
      await onSignedIn(signer, identity);
    } catch (exc) {
      showError("#signin-error", exc);
    } finally {
      button.disabled = false;
      button.textContent = "Sign in";
    }
  });
}
