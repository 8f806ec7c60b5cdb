// Submit: a YAML workflow pasted or uploaded, validated by the hub (`POST /validate`) as
// you type, with every mistake's code, line and column; then submitted as the normalized
// spec with `workflow_submit`. A VIEWER sees the form with its buttons disabled.

import { h, replace, setText, errorBlock, debounce, fmtInt } from "../util.js";

const EXAMPLE = `name: hello-dashboard
tasks:
  - id: numbers
    method: python/execute
    parameters:
      code: "result = {'values': [3, 1, 2]}"
  - id: total
    method: python/execute
    parameters:
      context: { values: "\${numbers.result.values}" }
      code: "result = sum(context['values'])"
`;

const LIVE_LIMIT = 512 * 1024; // larger texts are validated on request only

export function mount(app, container) {
  const canSubmit = app.canSubmit();
  const role = app.store.me ? app.store.me.role : "";
  const text = h("textarea#yaml", { spellcheck: false, rows: 22, "aria-label": "workflow YAML", placeholder: "name: my-flow\ntasks:\n  - id: a\n    method: python/execute\n    parameters: { code: 'result = 1' }" });
  const file = h("input#yaml-file", { type: "file", accept: ".yaml,.yml,.json,text/yaml,application/json", "aria-label": "upload a workflow file" });
  const validateBtn = h("button#validate-btn", { type: "button", text: "Validate" });
  const submitBtn = h("button.primary#submit-btn", { type: "button", text: "Submit workflow" });
  const example = h("button#example-btn", { type: "button", text: "Load example" });
  const state = h("div#validation-state.small");
  const diagnostics = h("ul.diagnostics#diagnostics");
  const result = h("div#submit-result");
  const cursor = h("span.muted.small#cursor");
  container.append(
    h(
      "section",
      null,
      h("h2", { text: "Submit a workflow" }),
      canSubmit ? null : h("p.notice#role-notice", { text: `Signed in as ${role}: this key may look but not submit. Submitting needs a USER, OPERATOR or ADMIN key.` }),
      h("div.toolbar", null, h("label.file", null, "Upload ", file), example, h("span.grow"), cursor),
      text,
      h("div.toolbar", null, validateBtn, submitBtn, state),
      diagnostics,
      result,
    ),
  );
  submitBtn.disabled = true;
  if (!canSubmit) {
    submitBtn.title = `${role} may not submit workflows`;
    submitBtn.dataset.forbidden = "true";
  }

  let last = { text: null, answer: null };
  let seq = 0;

  async function validate() {
    const body = text.value;
    if (last.text === body && last.answer) return last.answer;
    const mine = ++seq;
    setText(state, "Validating…");
    state.className = "small";
    let answer;
    try {
      answer = await app.validate(body);
    } catch (e) {
      if (mine === seq) {
        setText(state, "");
        replace(diagnostics);
        replace(result, errorBlock(e));
      }
      throw e;
    }
    if (mine !== seq) return answer;
    last = { text: body, answer };
    show(answer);
    return answer;
  }

  function show(answer) {
    const diags = answer.diagnostics || [];
    const errors = diags.filter((d) => d.severity === "error").length;
    const warnings = diags.length - errors;
    if (answer.valid) {
      setText(state, `Valid: ${fmtInt(answer.tasks ?? (answer.spec ? answer.spec.tasks.length : 0))} tasks${warnings ? `, ${warnings} warning(s)` : ""}.`);
      state.className = "small ok-text";
    } else {
      setText(state, `${errors} error(s)${warnings ? `, ${warnings} warning(s)` : ""}: fix them before submitting.`);
      state.className = "small bad-text";
    }
    submitBtn.disabled = !(answer.valid && canSubmit);
    replace(
      diagnostics,
      diags.map((d) =>
        h(
          `li.diag.sev-${d.severity}`,
          { dataset: { line: d.line ?? "", column: d.column ?? "" }, tabindex: "0", onclick: () => goTo(d.line, d.column) },
          h("span.code", { text: d.code }),
          h("span.where", { text: d.line ? `line ${d.line}, column ${d.column ?? 1}` : "anywhere" }),
          h("span.diag-message", { text: d.severity === "warning" ? `warning: ${d.message}` : d.message }),
          d.hint ? h("span.hint", { text: `hint: ${d.hint}` }) : null,
        ),
      ),
    );
  }

  /** Puts the caret on a line and column of the text. */
  function goTo(line, column) {
    if (!line) return;
    const lines = text.value.split("\n");
    let at = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) at += lines[i].length + 1;
    const end = at + (lines[line - 1] || "").length;
    text.focus();
    text.setSelectionRange(Math.min(at + Math.max(0, (column || 1) - 1), end), end);
    const lh = text.scrollHeight / Math.max(1, lines.length);
    text.scrollTop = Math.max(0, (line - 5) * lh);
  }

  function showCursor() {
    const before = text.value.slice(0, text.selectionStart);
    const line = before.split("\n").length;
    const col = before.length - before.lastIndexOf("\n");
    setText(cursor, `line ${line}, column ${col}`);
  }

  const live = debounce(() => {
    if (text.value.trim() && text.value.length <= LIVE_LIMIT) validate().catch(() => {});
  }, 400);
  text.addEventListener("input", () => {
    submitBtn.disabled = true;
    replace(result);
    live();
    showCursor();
  });
  text.addEventListener("keyup", showCursor);
  text.addEventListener("click", showCursor);
  file.addEventListener("change", async () => {
    const f = file.files && file.files[0];
    if (!f) return;
    text.value = await f.text();
    replace(result);
    validate().catch(() => {});
  });
  example.addEventListener("click", () => {
    text.value = EXAMPLE;
    replace(result);
    validate().catch(() => {});
  });
  validateBtn.addEventListener("click", () => validate().catch(() => {}));

  submitBtn.addEventListener("click", async () => {
    replace(result);
    let answer;
    try {
      answer = await validate();
    } catch {
      return;
    }
    if (!answer.valid) return;
    submitBtn.disabled = true;
    replace(result, h("p.muted", { text: "Submitting…" }));
    try {
      const reply = await app.submitSpec(answer.spec);
      replace(result, h("p.ok-text", null, "Submitted ", h("a", { href: `#/workflow/${encodeURIComponent(reply.workflow_id)}`, text: reply.workflow_id }), ` (${fmtInt(reply.total_tasks)} tasks).`));
      window.location.hash = `#/workflow/${encodeURIComponent(reply.workflow_id)}`;
    } catch (e) {
      replace(result, errorBlock(e, e.details && e.details.diagnostics ? h("ul", null, e.details.diagnostics.map((d) => h("li", { text: String(d) }))) : null));
      submitBtn.disabled = !canSubmit;
    }
  });

  return { update() {} };
}
