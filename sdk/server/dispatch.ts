import type { IncomingMessage, ServerResponse } from 'node:http'
import { bearerToken, tokensEqual } from './auth.js'
import { corsHeaders, PREFLIGHT_HEADERS, sendProblem } from './http.js'
import { HttpError } from './problem.js'
import { match, type Route } from './routes/index.js'

// One request, from its first byte to its answer: CORS preflight, the token, the route, and every error
// as problem details.

export interface DispatchOptions {
  table: Route[]
  token: string
  cors: readonly string[]
  onLog: (message: string) => void
}

function checkToken(req: IncomingMessage, token: string): void {
  const given = bearerToken(req.headers.authorization)
  if (given !== undefined && tokensEqual(given, token)) return
  req.resume()
  throw new HttpError(
    401,
    'unauthorized',
    given === undefined ? 'send Authorization: Bearer <token>' : 'the token is wrong',
    { headers: { 'WWW-Authenticate': 'Bearer realm="ttt-video"' } },
  )
}

/** What the client gets for `e`: an HttpError as it is, anything else as a 500 (logged, not shown). */
function problemOf(e: unknown, req: IncomingMessage, path: string, onLog: (m: string) => void): HttpError {
  if (e instanceof HttpError) return e
  onLog(`${req.method} ${path} failed: ${(e as Error).stack ?? e}`)
  return new HttpError(500, 'internal', 'the server failed to answer; see its log', {})
}

/** The request listener of the HTTP server. */
export function dispatcher(options: DispatchOptions) {
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const rawUrl = req.url ?? '/'
    const q = rawUrl.indexOf('?')
    const path = q < 0 ? rawUrl : rawUrl.slice(0, q)
    const cors = corsHeaders(req, options.cors)
    try {
      if (req.method === 'OPTIONS' && cors['Access-Control-Allow-Origin']) {
        res.writeHead(204, { ...cors, ...PREFLIGHT_HEADERS })
        res.end()
        return
      }
      checkToken(req, options.token)
      const { handler, params } = match(options.table, req.method ?? 'GET', path)
      const query = new URLSearchParams(q < 0 ? '' : rawUrl.slice(q + 1))
      await handler({ req, res, params, query, cors })
    } catch (e) {
      const error = problemOf(e, req, path, options.onLog)
      error.headers['Cache-Control'] = 'no-store'
      Object.assign(error.headers, cors)
      sendProblem(res, error, path)
    }
  }
  return (req: IncomingMessage, res: ServerResponse) => {
    void handle(req, res)
  }
}
