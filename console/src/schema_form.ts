// A form generated from a JSON Schema (the subset an answer needs): an object whose
// properties are strings (text, textarea, enum -> select), numbers, integers, booleans,
// and anything else as JSON text. Reading the form gives the JSON value to send.

export type Schema = Record<string, unknown>;

import { h } from "./dom.js";

interface Field {
  name: string;
  read(): unknown;
}

let nextId = 0;

function fieldFor(name: string, schema: Schema, required: boolean): [HTMLElement, Field] {
  const id = `f${++nextId}-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const title = typeof schema["title"] === "string" ? schema["title"] : name;
  const description = typeof schema["description"] === "string" ? schema["description"] : "";
  const type = schema["type"];
  const label = h("label", { for: id }, title);
  const help = description ? h("p", { class: "muted", id: `${id}-help` }, description) : null;
  const common = { id, name, required, "aria-describedby": help ? `${id}-help` : null };
  let control: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement;
  let read: () => unknown;
  if (Array.isArray(schema["enum"])) {
    const options = schema["enum"] as unknown[];
    const select = h("select", common, options.map((o, i) => h("option", { value: String(i) }, String(o))));
    control = select;
    read = () => options[Number(select.value)];
  } else if (type === "boolean") {
    const box = h("input", { ...common, type: "checkbox", required: false });
    control = box;
    read = () => box.checked;
  } else if (type === "integer" || type === "number") {
    const input = h("input", { ...common, type: "number", step: type === "integer" ? "1" : "any" });
    control = input;
    read = () => (input.value === "" ? undefined : Number(input.value));
  } else if (type === "string") {
    const long = schema["format"] === "textarea" || !("maxLength" in schema) || Number(schema["maxLength"]) > 120;
    const input = long ? h("textarea", { ...common, rows: 3 }) : h("input", { ...common, type: "text" });
    if (typeof schema["default"] === "string") input.value = schema["default"];
    control = input;
    read = () => (input.value === "" && !required ? undefined : input.value);
  } else {
    const area = h("textarea", { ...common, rows: 4, placeholder: "JSON", class: "json" });
    if (schema["default"] !== undefined) area.value = JSON.stringify(schema["default"], null, 2);
    control = area;
    read = () => {
      if (area.value.trim() === "") return undefined;
      try {
        return JSON.parse(area.value) as unknown;
      } catch {
        throw new Error(`${title} is not valid JSON`);
      }
    };
  }
  return [h("div", { class: "field" }, label, help, control), { name, read }];
}

/** The form's fields for an object schema, and a reader of the value they make. */
export function schemaFields(schema: Schema): [HTMLElement[], () => Record<string, unknown>] {
  const properties = (schema["properties"] ?? {}) as Record<string, Schema>;
  const required = new Set(Array.isArray(schema["required"]) ? (schema["required"] as string[]) : []);
  const elements: HTMLElement[] = [];
  const fields: Field[] = [];
  for (const [name, sub] of Object.entries(properties)) {
    const [el, field] = fieldFor(name, sub, required.has(name));
    elements.push(el);
    fields.push(field);
  }
  const read = (): Record<string, unknown> => {
    const value: Record<string, unknown> = {};
    for (const f of fields) {
      const v = f.read();
      if (v !== undefined) value[f.name] = v;
    }
    return value;
  };
  return [elements, read];
}
