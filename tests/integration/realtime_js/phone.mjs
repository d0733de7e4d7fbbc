// A supabase-js style phone on the unchanged @supabase/realtime-js (its default serializer, vsn 2.0.0).
//
// argv: <realtime base url, e.g. ws://127.0.0.1:PORT/realtime/v1> <anon key> <user access token> <channel>
// stdout: one JSON object per line: {"type": "vsn" | "status" | "system" | "row" | "sent", ...}.
// It exits when stdin closes (the test's way to stop it) or after 120 s, whichever comes first.
import { RealtimeClient } from '@supabase/realtime-js'

const [url, anon, token, name] = process.argv.slice(2)
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const client = new RealtimeClient(url, { params: { apikey: anon } })
say({ type: 'vsn', vsn: client.vsn })
await client.setAuth(token)

let sent = false
const channel = client.channel(name, { config: { broadcast: { ack: true } } })
channel
  .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'job_events' }, (change) =>
    say({ type: 'row', record: change.new })
  )
  .on('system', {}, async (payload) => {
    say({ type: 'system', payload })
    if (!sent && payload.status === 'ok') {
      sent = true
      // realtime-js sends a broadcast with a string event as a binary frame (kind 3).
      const result = await channel.send({ type: 'broadcast', event: 'hello', payload: { n: 1 } })
      say({ type: 'sent', result })
    }
  })
  .subscribe((status, err) => say({ type: 'status', status, error: err ? String(err) : null }))

const stop = async () => {
  await client.removeAllChannels()
  client.disconnect()
  process.exit(0)
}
process.stdin.on('end', stop)
process.stdin.resume()
setTimeout(stop, 120_000)
