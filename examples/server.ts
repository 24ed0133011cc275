// Starts the HTTP job service on a free loopback port and drives it through the typed client:
// submit a job, follow its events, download the video, delete the job, then stop. Runs the demo
// model (models/demo) on the CPU: a 9-second video of 3 scenes in 4 denoising steps. On two shared
// CPU cores that took 15-23 s with the tiny random model this example used before; most of it is starting
// Python, loading the text encoder and decoding 145 frames, and it takes longer when other work shares
// the cores: the example prints its own time. With a converted bundle, pass `bundles: { cogvideox: PATH }`.
//
//   npm run example examples/server.ts [OUT_DIR]
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createClient, createServer, ServiceError } from 'ttt-video/server'

const started = performance.now()
const out = resolve(process.argv[2] ?? 'output/server-example')
mkdirSync(out, { recursive: true })

const jobsDir = mkdtempSync(join(tmpdir(), 'ttt-video-jobs-'))
const server = createServer({
  port: 0, // any free port
  jobsDir,
  onLog: (message) => console.error(`server: ${message}`),
})
const url = await server.listen()
console.log(`listening on ${url} (token from: ${server.tokenSource})`)

const client = createClient({ baseUrl: url, token: server.token })
try {
  const { data: bundles } = await client.GET('/v1/bundles')
  console.log('bundles:', bundles?.bundles.map((b) => `${b.name}${b.demo ? ' (demo)' : ''}`).join(', '))

  // A bad request is a 422 that names the field.
  const bad = await client.POST('/v1/jobs', { body: { storyboards: [[{ text: '' }]] } })
  console.log(`a bad request: ${bad.response.status} ${bad.error?.errors?.map((e) => e.path).join(', ')}`)

  const job = await client.submitJob({
    storyboards: [
      [
        { text: 'A green square moves up on a black background.' },
        { text: 'A white triangle moves left on a pink background.', requires_scene_transition: true },
        { text: 'The square comes back on a grey background.', requires_scene_transition: true },
      ],
    ],
    overrides: { eval: { num_denoising_steps: 4 } },
    seed: 1,
  })
  console.log(`job ${job.id}: ${job.state}`)

  for await (const event of client.followJob(job.id)) {
    if (event.type === 'step') console.log(`  video ${event.video}: step ${event.index + 1}/${event.total}`)
    else if (event.type === 'decode.window') {
      if (event.index + 1 === event.total)
        console.log(`  video ${event.video}: decoded ${event.total} windows`)
    } else if (event.type === 'video.written')
      console.log(`  video ${event.video} written (${event.frames} frames)`)
    else if (event.type === 'warning') console.log(`  warning: ${event.path ?? ''} ${event.message}`)
    else console.log(`  ${event.type}`)
  }
  const final = await client.waitForJob(job.id)
  console.log(`job ${job.id}: ${final.state}`)
  for (const video of final.videos) {
    const file = await client.downloadVideo(job.id, video.index, join(out, `video-${video.index}.mp4`))
    console.log(
      `  ${file}: ${video.frames} frames at ${video.fps} fps; preview at ${url}${video.preview_url}`,
    )
  }
  await client.deleteJob(job.id) // its folder goes; the server can also do it: keepJobs / keepDays
  console.log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`)
} catch (e) {
  if (e instanceof ServiceError) console.error(e.message, e.problem?.errors ?? '')
  throw e
} finally {
  await server.close()
  rmSync(jobsDir, { recursive: true, force: true })
}
