/** One Server-Sent Events message. */
export interface SseMessage {
  id: string | undefined
  event: string
  data: string
}

interface PartialMessage {
  id: string | undefined
  event: string
  lines: string[]
}

/** The fields of one SSE line, applied to the message being read. */
function readLine(line: string, message: PartialMessage): void {
  if (line.startsWith(':')) return // a comment (keep-alive)
  const colon = line.indexOf(':')
  const field = colon < 0 ? line : line.slice(0, colon)
  const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
  if (field === 'data') message.lines.push(value)
  else if (field === 'event') message.event = value
  else if (field === 'id') message.id = value
}

/** Parses an SSE byte stream into messages (comments and `retry:` are skipped). */
export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const decoder = new TextDecoder()
  let buffer = ''
  const message: PartialMessage = { id: undefined, event: '', lines: [] }
  const reader = body.getReader()
  try {
    for (;;) {
      const { value, done } = await reader.read()
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true })
      let newline = buffer.search(/\r\n|\r|\n/)
      while (newline >= 0) {
        const line = buffer.slice(0, newline)
        buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1))
        if (line !== '') readLine(line, message)
        else {
          if (message.lines.length > 0)
            yield { id: message.id, event: message.event || 'message', data: message.lines.join('\n') }
          message.event = ''
          message.lines = []
        }
        newline = buffer.search(/\r\n|\r|\n/)
      }
      if (done) return
    }
  } finally {
    reader.releaseLock()
    await body.cancel().catch(() => {})
  }
}
