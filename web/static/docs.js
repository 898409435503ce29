// The API docs page: renders /openapi.json and /asyncapi.json as plain HTML (no CDN, no eval,
// no inline script or style: it runs under the page's strict CSP). Text only via textContent.

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ''));
  return node;
};

const refName = (ref) => ref.split('/').pop();

function typeOf(schema) {
  if (!schema) return 'any';
  if (schema.$ref) return el('a', { href: `#schema-${refName(schema.$ref)}` }, refName(schema.$ref));
  if (schema.allOf) return typeOf(schema.allOf[0]);
  if (schema.anyOf) {
    const span = el('span');
    schema.anyOf.forEach((s, i) => { if (i) span.append(' | '); span.append(typeOf(s)); });
    return span;
  }
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(' | ');
  if (schema.type === 'array') {
    const span = el('span', {}, typeOf(schema.items), '[]');
    return span;
  }
  if (schema.type === 'object' && schema.additionalProperties) {
    return el('span', {}, 'map of ', typeOf(schema.additionalProperties));
  }
  return [].concat(schema.type || 'any').join(' | ');
}

function bounds(schema) {
  const keys = ['minimum', 'maximum', 'exclusiveMinimum', 'minLength', 'maxLength', 'pattern',
    'minItems', 'maxItems'];
  return keys.filter((k) => k in schema).map((k) => `${k} ${schema[k]}`).join(', ');
}

function table(headings, rows) {
  const head = el('tr', {}, ...headings.map((h) => el('th', {}, h)));
  return el('table', {}, el('thead', {}, head),
    el('tbody', {}, ...rows.map((cells) => el('tr', {}, ...cells.map((c) => el('td', {}, c))))));
}

function operation(path, method, op) {
  const box = el('details', { id: `op-${op.operationId}` });
  box.append(el('summary', {}, el('span', { class: 'method' }, method.toUpperCase()),
    el('span', { class: 'path' }, path), ' — ', op.summary));
  const security = (op.security || []).map((s) => Object.keys(s)[0] || 'none').join(', ');
  box.append(el('p', { class: 'muted' }, `Sign-in: ${security || 'none'}`));
  const params = (op.parameters || []).filter((p) => !p.$ref);
  if (params.length) {
    box.append(table(['parameter', 'in', 'type', 'meaning'],
      params.map((p) => [p.name, p.in, typeOf(p.schema), p.description || ''])));
  }
  const body = op.requestBody?.content?.['application/json']?.schema;
  if (body) box.append(el('p', {}, 'Body: ', typeOf(body)));
  box.append(table(['status', 'meaning', 'body'], Object.entries(op.responses).map(
    ([status, r]) => [status, r.description, typeOf(r.content?.['application/json']?.schema)])));
  return box;
}

function schemaBlock(name, schema) {
  const box = el('details', { id: `schema-${name}` });
  box.append(el('summary', {}, el('code', {}, name), ' ', schema.description || ''));
  const required = new Set(schema.required || []);
  box.append(table(['field', 'type', 'required', 'meaning'],
    Object.entries(schema.properties || {}).map(([field, s]) => [
      field, typeOf(s), required.has(field) ? 'yes' : '',
      [s.description, bounds(s)].filter(Boolean).join(' — ')])));
  return box;
}

async function load(url) {
  const response = await fetch(url, { headers: { Accept: 'application/json' } });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function main() {
  const intro = document.getElementById('docs-intro');
  try {
    const [api, ws] = await Promise.all([load('/openapi.json'), load('/asyncapi.json')]);
    intro.textContent = api.info.description;
    const ops = document.getElementById('operations');
    ops.append(el('h2', {}, 'HTTP operations'));
    for (const [path, methods] of Object.entries(api.paths)) {
      for (const [method, op] of Object.entries(methods)) ops.append(operation(path, method, op));
    }
    const sock = document.getElementById('websocket');
    const channel = ws.channels.orders;
    sock.append(el('h2', {}, `Websocket ${channel.address}`),
      el('p', {}, ws.info.description), el('p', {}, channel.description));
    for (const [name, message] of Object.entries(ws.components.messages)) {
      sock.append(schemaBlock(name, { ...ws.components.schemas[refName(message.payload.$ref)],
        description: message.summary }));
    }
    const schemas = document.getElementById('schemas');
    schemas.append(el('h2', {}, 'Schemas'));
    for (const [name, schema] of Object.entries(api.components.schemas)) {
      schemas.append(schemaBlock(name, schema));
    }
  } catch (error) {
    intro.textContent = `Could not load the API description: ${error.message}`;
  }
}

main();
