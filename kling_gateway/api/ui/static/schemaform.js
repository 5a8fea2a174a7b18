// A form drawn from a request body's JSON schema in the OpenAPI document, for the create
// endpoints other than /kling/videos (whose form is laid out by hand in form.js): each
// documented field gets a control, so a kind added to the API gets its form with it.

import { h, select } from "./dom.js";

const resolve = (doc, schema) => {
  let s = schema || {};
  while (s.$ref) s = s.$ref.split("/").slice(1).reduce((node, key) => node[key], doc);
  return s;
};

const kindOf = (doc, prop) => {
  const s = resolve(doc, prop);
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  if (s.enum) return "enum";
  if (type === "array" && resolve(doc, s.items).enum) return "checks";
  return ["string", "number", "integer", "boolean"].includes(type) ? type : "json";
};

function control(doc, name, prop, required) {
  const s = resolve(doc, prop);
  switch (kindOf(doc, prop)) {
    case "enum": return select(name, s.enum, s.default ?? "", required ? null : "default");
    case "checks": return h("span", { class: "checks" }, resolve(doc, s.items).enum.map((v) =>
      h("label", {}, h("input", { type: "checkbox", name, value: v }), v)));
    case "boolean": return select(name, ["true", "false"], s.default === undefined ? "" : String(s.default), "default");
    case "number": case "integer":
      return h("input", { name, type: "number", min: s.minimum, max: s.maximum, step: s.type === "integer" || s.multipleOf === 1 ? 1 : "any", placeholder: s.default });
    case "string":
      return (s.maxLength || 0) > 300
        ? h("textarea", { name, rows: 3, maxlength: s.maxLength, placeholder: s.default })
        : h("input", { name, type: "text", autocomplete: "off", placeholder: s.default });
    default: return h("textarea", { name, rows: 2, placeholder: "JSON", "data-json": true });
  }
}

/** The fields of ``schema`` (a request body), each in a label with data-field=name. */
export function schemaFields(doc, schema) {
  const s = resolve(doc, schema);
  const required = new Set(s.required || []);
  return Object.entries(s.properties || {}).map(([name, prop]) => {
    const described = resolve(doc, prop).description || prop.description;
    return h("label", { class: "field", "data-field": name },
      h("span", {}, required.has(name) ? `${name} *` : name), control(doc, name, prop, required.has(name)),
      described ? h("small", {}, described.replace(/`/g, "")) : null);
  });
}

/** The body of a schemaFields form: filled-in fields only, typed as the schema says. */
export function schemaBody(doc, schema, form) {
  const body = {};
  for (const [name, prop] of Object.entries(resolve(doc, schema).properties || {})) {
    const kind = kindOf(doc, prop);
    if (kind === "checks") {
      const values = [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((e) => e.value);
      if (values.length) body[name] = values;
      continue;
    }
    const value = form.elements[name].value.trim();
    if (value === "") continue;
    if (kind === "boolean") body[name] = value === "true";
    else if (kind === "number" || kind === "integer") body[name] = Number(value);
    else if (kind === "json") {
      try { body[name] = JSON.parse(value); } catch { throw new Error(`field ${name}: not valid JSON`); }
    } else body[name] = value;
  }
  return body;
}

/** The create endpoints besides /kling/videos: every POST /kling/... with a JSON body that
 * answers a task (not the tasks API, not the upstream's callback). */
export function otherKinds(doc) {
  return Object.entries(doc.paths)
    .filter(([path, item]) => path.startsWith("/kling/") && item.post && item.post.requestBody
      && !["/kling/tasks", "/kling/videos"].includes(path) && !path.includes("{"))
    .map(([path, item]) => ({ path, summary: item.post.summary || path,
      schema: item.post.requestBody.content["application/json"].schema }));
}
