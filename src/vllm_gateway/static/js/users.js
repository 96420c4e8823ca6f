// The admin accounts page (owners only): create, change role, disable or enable.
import { adminApi, el } from "./common.js";
import { attempt, cell, formValues, listOf, showError } from "./org.js";

const body = document.getElementById("users-body");
const form = document.getElementById("user-form");

function change(user, values, done) {
  return attempt(
    () => adminApi(`/api/v1/users/${encodeURIComponent(user.username)}`, { method: "PATCH", body: values }),
    done,
  ).then(load);
}

function row(user) {
  const active = user.status === "active";
  return el(
    "tr",
    { dataset: { user: user.username } },
    cell(user.username, "font-medium"),
    cell(user.role),
    cell(user.team_ids.join(", ") || "—"),
    cell(user.sso ? "single sign-on" : "password"),
    cell(user.status),
    el(
      "td",
      { class: "table-cell text-right" },
      el(
        "button",
        { type: "button", class: "btn btn-ghost", onclick: () => change(user, { disabled: active }, active ? "Disabled" : "Enabled") },
        active ? "Disable" : "Enable",
      ),
    ),
  );
}

async function load() {
  try {
    const users = await adminApi("/api/v1/users");
    body.replaceChildren(...users.data.map(row));
    if (!users.data.length) body.append(el("tr", {}, cell("No accounts yet: the admin key still works.")));
    showError(null);
  } catch (error) {
    showError(error);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const values = formValues(form);
  values.team_ids = listOf(values.team_ids);
  if (!values.password) values.password = null;
  await attempt(() => adminApi("/api/v1/users", { method: "POST", body: values }), "Account created");
  form.reset();
  await load();
});

load();
