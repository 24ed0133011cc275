import * as z from 'zod'
import { RunEvent } from '../contracts/events.js'
import { ConfigOverrides, JobRequest, Segment } from './schemas.js'

// The served OpenAPI document is built, never copied: the hand-written paths and service-only schemas of
// sdk/server/openapi.yaml, plus the JSON Schema of the components the SDK's zod schemas define.
// scripts/generate-api-types.mjs writes the result to sdk/server/openapi.gen.json.

export type OpenApiDocument = Record<string, unknown> & { components?: { schemas?: Record<string, unknown> } }

/** The zod schemas behind components of the document, by component name, with their direction. */
const REQUEST_COMPONENTS = { Segment, ConfigOverrides, JobRequest }
const RESPONSE_COMPONENTS = { RunEvent }

/** The names of the components that come from zod (openapi.yaml must not define them). */
export const ZOD_COMPONENTS = [...Object.keys(REQUEST_COMPONENTS), ...Object.keys(RESPONSE_COMPONENTS)]

/**
 * The JSON Schema (2020-12, as OpenAPI 3.1 uses) of every zod-backed component, refs between them as
 * `#/components/schemas/<name>`. Requests use zod's input side (fields with defaults are optional),
 * events its output side.
 */
export function zodComponentSchemas(): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {}
  for (const [components, io] of [
    [REQUEST_COMPONENTS, 'input'],
    [RESPONSE_COMPONENTS, 'output'],
  ] as const) {
    const registry = z.registry<{ id: string }>()
    for (const [id, schema] of Object.entries(components)) registry.add(schema, { id })
    const { schemas } = z.toJSONSchema(registry, { io, uri: (id) => `#/components/schemas/${id}` }) as {
      schemas: Record<string, Record<string, unknown>>
    }
    for (const [id, schema] of Object.entries(schemas)) {
      const { $schema: _s, $id: _i, ...rest } = schema
      out[id] = rest
    }
  }
  return out
}

/** Every `$ref` in `node`. */
export function refsOf(node: unknown, into = new Set<string>()): Set<string> {
  if (Array.isArray(node)) for (const item of node) refsOf(item, into)
  else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string') into.add(value)
      else refsOf(value, into)
    }
  }
  return into
}

function resolvePointer(document: unknown, ref: string): unknown {
  if (!ref.startsWith('#/')) return undefined
  return ref
    .slice(2)
    .split('/')
    .map((key) => key.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], document)
}

/**
 * The whole document: `handWritten` (openapi.yaml, parsed) with the zod-backed components added. Throws
 * when openapi.yaml defines one of them itself, or when a `$ref` points nowhere.
 */
export function buildOpenApiDocument(handWritten: OpenApiDocument): OpenApiDocument {
  const schemas = handWritten.components?.schemas ?? {}
  const copied = ZOD_COMPONENTS.filter((name) => name in schemas)
  if (copied.length > 0)
    throw new Error(
      `openapi.yaml defines ${copied.join(', ')}, which come from the zod schemas: delete them there`,
    )
  const document: OpenApiDocument = {
    ...handWritten,
    components: { ...handWritten.components, schemas: { ...schemas, ...zodComponentSchemas() } },
  }
  const dangling = [...refsOf(document)].filter((ref) => resolvePointer(document, ref) === undefined)
  if (dangling.length > 0) throw new Error(`$refs that point nowhere: ${dangling.join(', ')}`)
  return document
}
