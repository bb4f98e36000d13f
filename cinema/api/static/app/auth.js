// Sign in or register inline, without leaving the page (the selection stays as it was).

import { ApiError, register, signIn } from "./api.js";
import { h, replace } from "./dom.js";

let counter = 0;

export function authPanel(message, onDone) {
  const n = ++counter;
  const email = h("input", { id: `email-${n}`, type: "email", name: "email", autocomplete: "email", required: true });
  const password = h("input", {
    id: `password-${n}`, type: "password", name: "password", autocomplete: "current-password",
    required: true, minlength: "8",
  });
  const slot = h("div", { class: "slot" });
  const submit = async (action, button) => {
    if (!email.value || password.value.length < 8) {
      replace(slot, h("div", { class: "error", role: "alert" }, "Enter your email and a password of at least 8 characters."));
      return;
    }
    button.disabled = true;
    try {
      await action(email.value.trim(), password.value);
      onDone();
    } catch (err) {
      button.disabled = false;
      const text = err instanceof ApiError ? err.human : "Something went wrong; try again.";
      replace(slot, h("div", { class: "error", role: "alert" }, text));
    }
  };
  const signInButton = h("button", { type: "submit", class: "primary" }, "Sign in");
  const registerButton = h("button", {
    type: "button",
    onclick: () => submit(register, registerButton),
  }, "Create account");
  const form = h("form", {
    class: "auth",
    "aria-label": "Sign in or create an account",
    onsubmit: (e) => { e.preventDefault(); submit(signIn, signInButton); },
  },
  h("p", {}, message),
  h("label", { for: email.id }, "Email"), email,
  h("label", { for: password.id }, "Password (at least 8 characters)"), password,
  h("div", { class: "actions" }, signInButton, registerButton),
  slot);
  queueMicrotask(() => email.focus());
  return form;
}
