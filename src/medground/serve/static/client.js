// The medground REST API as seen from the page. An optional bearer token comes from the page's
// own URL (?token=...) and is sent as "Authorization: Bearer" with every request.
const params = new URLSearchParams(window.location.search)
export const token = params.get('token') || ''
export const authHeaders = () => (token ? { Authorization: `Bearer ${token}` } : {})

// The API lives on the page's own origin.
export const API = '/api'

export class ApiError extends Error {}

async function detail (resp) {
  const text = await resp.text()
  try {
    const j = JSON.parse(text)
    const d = j.detail ?? j.error ?? j.message ?? j
    if (typeof d === 'string') return d
    if (Array.isArray(d)) return d.map((e) => e.msg || JSON.stringify(e)).join('; ')
    return JSON.stringify(d)
  } catch {
    return text.slice(0, 200) || resp.statusText
  }
}

export async function request (path, opts = {}) {
  let resp
  try {
    resp = await fetch(API + path, { ...opts, headers: { ...authHeaders(), ...(opts.headers || {}) } })
  } catch (e) {
    throw new ApiError(`server unreachable (${e.message})`)
  }
  if (!resp.ok) throw new ApiError(`${await detail(resp)} (HTTP ${resp.status})`)
  return resp
}

export const getJson = async (path) => (await request(path)).json()

export async function uploadStudy (files) {
  const form = new FormData()
  for (const f of files) form.append('files', f, f.name)
  return (await request('/studies', { method: 'POST', body: form })).json()
}

export async function submitJob (studyId, task, params = {}) {
  const body = JSON.stringify({ study_id: studyId, task, params })
  return (await request('/jobs', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body })).json()
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// Poll a job until it is done (returns the job) or failed (throws its error).
export async function waitJob (jobId, onTick = () => {}, { timeoutMs = 30 * 60 * 1000 } = {}) {
  const t0 = Date.now()
  let delay = 250
  for (;;) {
    const job = await getJson(`/jobs/${encodeURIComponent(jobId)}`)
    if (job.status === 'done') return job
    if (job.status === 'failed') throw new ApiError(job.error || 'the job failed')
    onTick(job, (Date.now() - t0) / 1000)
    if (Date.now() - t0 > timeoutMs) throw new ApiError(`job ${jobId} still ${job.status} after ${timeoutMs / 60000} min`)
    await sleep(delay)
    delay = Math.min(1000, delay * 1.5)
  }
}

export async function runJob (studyId, task, params, onTick) {
  const job = await submitJob(studyId, task, params)
  const id = job.job_id ?? job.id
  const done = job.status === 'done' && job.result ? job : await waitJob(id, onTick)
  return { ...done, job_id: id }
}

export const jobUrl = (jobId, name) => `${API}/jobs/${encodeURIComponent(jobId)}/${name}`
export const studyUrl = (studyId, name) => `${API}/studies/${encodeURIComponent(studyId)}/${name}`
