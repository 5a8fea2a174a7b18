// The create form: every field of POST /kling/videos (docs/contract.md §2, §6). Its choices and
// help texts come from the OpenAPI document, so a model or a mode added there shows up here.

import { call, createVideo, schema } from "./api.js";
import { errorBox, h, select } from "./dom.js";
import { otherKinds, schemaBody, schemaFields } from "./schemaform.js";

const AXES = ["horizontal", "vertical", "pan", "tilt", "roll", "zoom"];

function fieldFor(name, label, input, help) {
  return h("label", { class: "field", "data-field": name }, h("span", {}, label), input,
    help ? h("small", {}, help.replace(/`/g, "")) : null);
}

function text(name, attrs = {}) {
  return h("input", { name, type: "text", autocomplete: "off", ...attrs });
}

function lines(value) {
  return value.split("\n").map((line) => line.trim()).filter(Boolean);
}

function ids(value, key) {
  const list = value.split(/[\s,]+/).filter(Boolean).map((id) => ({ [key]: id }));
  return list.length ? list : undefined;
}

function imageList(value) {
  const refs = lines(value).map((line) => {
    const [url, type] = line.split(/\s+/);
    return type ? { image_url: url, type } : { image_url: url };
  });
  return refs.length ? refs : undefined;
}

function shots(value) {
  const list = lines(value).map((line, i) => {
    const match = line.match(/^(\d+(?:\.\d+)?)\s*s?\s*:\s*(.+)$/);
    if (!match) throw new Error(`multi_prompt line ${i + 1}: write "SECONDS: prompt"`);
    return { index: i + 1, prompt: match[2], duration: Number(match[1]) };
  });
  return list.length ? list : undefined;
}

/** The request body from the form: only what was filled in (the server applies defaults). */
export function bodyFrom(form) {
  const v = (name) => form.elements[name].value.trim();
  const num = (name) => (v(name) === "" ? undefined : Number(v(name)));
  const body = {
    action: v("action"), model: v("model"), mode: v("mode"), duration: num("duration"),
    aspect_ratio: v("aspect_ratio"), prompt: v("prompt") || undefined,
    negative_prompt: v("negative_prompt") || undefined, cfg_scale: num("cfg_scale"),
    start_image_url: v("start_image_url") || undefined, end_image_url: v("end_image_url") || undefined,
    video_id: v("video_id") || undefined, callback_url: v("callback_url") || undefined,
    image_list: imageList(v("image_list")), multi_prompt: shots(v("multi_prompt")),
    element_list: ids(v("element_list"), "element_id"), voice_list: ids(v("voice_list"), "voice_id"),
    shot_type: v("shot_type") || undefined,
  };
  if (v("generate_audio")) body.generate_audio = v("generate_audio") === "true";
  if (form.elements.multi_shot.checked) body.multi_shot = true;
  if (form.elements.async.checked) body.async = true;
  const events = [...form.querySelectorAll("input[name=callback_events]:checked")].map((e) => e.value);
  if (events.length) body.callback_events = events;
  if (v("camera_type")) {
    const config = Object.fromEntries(AXES.map((axis) => [axis, num(`camera_${axis}`) || 0]));
    body.camera_control = { type: v("camera_type"), config };
  }
  if (v("video_url")) {
    const ref = { video_url: v("video_url") };
    if (v("refer_type")) ref.refer_type = v("refer_type");
    if (v("keep_original_sound")) ref.keep_original_sound = v("keep_original_sound");
    body.video_list = [ref];
  }
  return Object.fromEntries(Object.entries(body).filter(([, value]) => value !== undefined));
}

function fieldsets(s) {
  const p = s.VideosRequest.properties;
  const help = (name) => p[name].description;
  const camera = s.CameraControl.properties;
  const video = s.VideoRef.properties;
  return [
    ["What", [
      fieldFor("action", "Action", select("action", p.action.enum, "text2video")),
      fieldFor("model", "Model", select("model", p.model.enum, p.model.default), help("model")),
      fieldFor("mode", "Mode", select("mode", p.mode.enum, p.mode.default), help("mode")),
      fieldFor("duration", "Duration (s)", h("input", { name: "duration", type: "number", min: p.duration.minimum, max: p.duration.maximum, step: 1, value: p.duration.default }), help("duration")),
      fieldFor("aspect_ratio", "Aspect ratio", select("aspect_ratio", p.aspect_ratio.enum, p.aspect_ratio.default)),
      fieldFor("prompt", "Prompt", h("textarea", { name: "prompt", rows: 3, maxlength: p.prompt.maxLength }), help("prompt")),
      fieldFor("negative_prompt", "Negative prompt", h("textarea", { name: "negative_prompt", rows: 2 })),
      fieldFor("cfg_scale", "cfg_scale", h("input", { name: "cfg_scale", type: "number", min: 0, max: 1, step: 0.05 })),
    ]],
    ["Frames and extend", [
      fieldFor("start_image_url", "Start image URL", text("start_image_url", { type: "url" }), help("start_image_url")),
      fieldFor("end_image_url", "End image URL", text("end_image_url", { type: "url" }), help("end_image_url")),
      fieldFor("video_id", "Video id to extend", text("video_id"), help("video_id")),
    ]],
    ["Camera and sound", [
      fieldFor("camera_control", "Camera movement", select("camera_type", camera.type.enum, "", "none"), s.CameraControl.description),
      h("div", { class: "axes" }, AXES.map((axis) => fieldFor(`camera_control.config.${axis}`, axis,
        h("input", { name: `camera_${axis}`, type: "number", min: -1, max: 1, step: 0.1, placeholder: "0" })))),
      fieldFor("generate_audio", "Generate audio", select("generate_audio", ["true", "false"], "", "default"), help("generate_audio")),
    ]],
    ["Omni references", [
      fieldFor("image_list", "Images (one per line: URL [first_frame|end_frame])", h("textarea", { name: "image_list", rows: 2 }), help("image_list")),
      fieldFor("video_list", "Reference video URL", text("video_url", { type: "url" }), help("video_list")),
      fieldFor("video_list.refer_type", "Reference type", select("refer_type", video.refer_type.enum, "", "default")),
      fieldFor("video_list.keep_original_sound", "Keep its sound", select("keep_original_sound", video.keep_original_sound.enum, "", "default")),
    ]],
    ["Storyboard", [
      fieldFor("multi_shot", "Multi-shot", h("input", { name: "multi_shot", type: "checkbox" }), help("multi_shot")),
      fieldFor("shot_type", "Shot type", select("shot_type", p.shot_type.enum, "", "none"), help("shot_type")),
      fieldFor("multi_prompt", "Shots (one per line: SECONDS: prompt)", h("textarea", { name: "multi_prompt", rows: 3 }), help("multi_prompt")),
    ]],
    ["Elements and voices", [
      fieldFor("element_list", "Element ids", text("element_list", { placeholder: "el_…, el_…" }), help("element_list")),
      fieldFor("voice_list", "Voice ids", text("voice_list", { placeholder: "vo_…" }), help("voice_list")),
    ]],
    ["Delivery", [
      fieldFor("async", "Answer at once (async)", h("input", { name: "async", type: "checkbox", checked: true }), help("async")),
      fieldFor("callback_url", "Callback URL", text("callback_url", { type: "url" }), help("callback_url")),
      fieldFor("callback_events", "Also call back on",
        h("span", { class: "checks" }, p.callback_events.items.enum.map((event) =>
          h("label", {}, h("input", { type: "checkbox", name: "callback_events", value: event }), event)))),
    ]],
  ];
}

function submitting(form, problem, send) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.replaceChildren();
    try {
      const answer = await send();
      location.hash = `#/task/${encodeURIComponent(answer.task_id || answer.id)}`;
    } catch (exc) {
      problem.append(errorBox(exc));
    }
  });
}

export async function createPage(main, query) {
  const doc = await schema();
  const s = doc.components.schemas;
  const kinds = otherKinds(doc);
  const chosen = kinds.find((k) => k.path === query.get("kind"));
  const problem = h("div");
  const tabs = kinds.length ? h("nav", { class: "tabs", id: "kinds" },
    h("a", { href: "#/create", class: chosen ? null : "current" }, "Video"),
    kinds.map((k) => h("a", { href: `#/create?kind=${encodeURIComponent(k.path)}`, class: chosen === k ? "current" : null }, k.path.slice("/kling/".length)))) : null;
  let form;
  if (chosen) {
    form = h("form", { class: "card create", id: "create", "data-kind": chosen.path },
      h("fieldset", {}, h("legend", {}, chosen.summary), schemaFields(doc, chosen.schema)),
      h("div", { class: "actions" }, h("button", { type: "submit", id: "create-submit" }, "Create")), problem);
    submitting(form, problem, () => call("POST", chosen.path, { async: true, ...schemaBody(doc, chosen.schema, form) }));
  } else {
    form = h("form", { class: "card create", id: "create", "data-kind": "/kling/videos" },
      fieldsets(s).map(([legend, items]) => h("fieldset", {}, h("legend", {}, legend), items)),
      h("div", { class: "actions" }, h("button", { type: "submit", id: "create-submit" }, "Create video")), problem);
    submitting(form, problem, () => createVideo(bodyFrom(form)));
  }
  main.append(...[h("h1", {}, "Create"), tabs, form].filter(Boolean));
}
