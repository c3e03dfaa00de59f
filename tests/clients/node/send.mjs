// Sends Segment calls with the official @segment/analytics-node client, configured as any
// user would configure it, only with `host` pointed at a Throughline server.
//
//   node send.mjs --host http://localhost:8000 --write-key KEY < calls.json
//
// calls.json is a list of {"call": "identify" | "track" | "page" | "screen" | "group" | "alias",
// "params": {...}}, the params as the client's own methods take them. On success it prints
// {"requests": [{url, headers, body, status}]}: every HTTP request the client made and the
// status it got. It exits 1 if the client reports any failure it can see: an 'error' event, a
// call whose callback gets an error, a response outside 2xx (the client counts 3xx as
// delivered), or a call still undelivered when closeAndFlush() returns.
import { parseArgs } from 'node:util'
import { Analytics } from '@segment/analytics-node'

const { values: args } = parseArgs({
  options: {
    host: { type: 'string' },
    'write-key': { type: 'string' },
    'flush-timeout-ms': { type: 'string', default: '20000' },
  },
})
if (!args.host || !args['write-key']) {
  console.error('usage: node send.mjs --host URL --write-key KEY < calls.json')
  process.exit(2)
}

let input = ''
for await (const chunk of process.stdin) input += chunk
const calls = JSON.parse(input)

const analytics = new Analytics({
  writeKey: args['write-key'],
  host: args.host,
  // The default path is /v1/batch, which Throughline serves; maxRetries 0 so that a refused
  // batch fails now rather than after minutes of backoff.
  maxRetries: 0,
})

const failures = []
const requestHeaders = new Map()
const requests = []
analytics.on('error', (error) => failures.push(`error event: ${error.code}: ${error.reason}`))
analytics.on('http_request', ({ body, headers }) => requestHeaders.set(body, headers))
analytics.on('http_response', ({ url, body, status }) => {
  requests.push({ url, headers: requestHeaders.get(body) ?? {}, body, status })
  if (status < 200 || status >= 300) failures.push(`HTTP ${status} from ${url}`)
})

let delivered = 0
for (const [index, { call, params }] of calls.entries()) {
  analytics[call](params, (error) => {
    if (error) failures.push(`call ${index} (${call}): ${error}`)
    else delivered += 1
  })
}
await analytics.closeAndFlush({ timeout: Number(args['flush-timeout-ms']) })

if (delivered !== calls.length) failures.push(`${delivered} of ${calls.length} calls delivered`)
if (failures.length) {
  console.error(failures.join('\n'))
  process.exit(1)
}
console.log(JSON.stringify({ requests }))
