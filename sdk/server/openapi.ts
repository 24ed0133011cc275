import document from './openapi.gen.json' with { type: 'json' }

/** The OpenAPI document of the service (openapi.gen.json: openapi.yaml plus the zod components), served at /openapi.json. */
export const openapiDocument: Readonly<Record<string, unknown>> = document
