// medground viewer: upload a study, look at it (NiiVue), segment by words, read findings, report and answers.
import { ApiError, getJson, jobUrl, request, runJob, studyUrl, uploadStudy, authHeaders } from './client.js'
import { Viewer, colorFor } from './viewer.js'

const $ = (sel) => document.querySelector(sel)
const el = (tag, props = {}, ...children) => {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v
    else if (k === 'dataset') Object.assign(e.dataset, v)
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v)
    else e.setAttribute(k, v)
  }
  for (const c of children) if (c != null) e.append(c)
  return e
}
const fmt = (x, d = 2) => (typeof x === 'number' && Number.isFinite(x) ? String(+x.toFixed(d)) : '–')
const pct = (x) => (typeof x === 'number' ? `${Math.round(x * 100)}%` : '–')

const state = { study: null, busy: false, findings: [], segmentJob: null, completed: 0 } // completed: pieces of work finished (ok or not)

// ------------------------------------------------------------------ status line
function setStatus (text, kind = 'info') {
  const s = $('#status')
  s.textContent = text
  s.title = text
  s.className = kind === 'info' ? '' : kind
  document.body.dataset.state = kind === 'busy' ? 'busy' : kind === 'error' ? 'error' : 'idle'
}

function describeError (e) {
  return e instanceof ApiError ? e.message : `${e.name || 'Error'}: ${e.message || e}`
}

// Run one piece of work with the controls locked and its progress and errors in the status line.
async function work (label, fn) {
  if (state.busy) return
  state.busy = true
  updateControls()
  setStatus(`${label}…`, 'busy')
  try {
    const msg = await fn((text) => setStatus(text, 'busy'))
    setStatus(msg || 'ready')
  } catch (e) {
    console.error(e)
    setStatus(`${label} failed: ${describeError(e)}`, 'error')
  } finally {
    state.busy = false
    state.completed += 1
    updateControls()
  }
}

function updateControls () {
  const noStudy = !state.study
  $('#upload-btn').disabled = state.busy
  for (const id of ['#segment-btn', '#ask-btn', '#classify-btn', '#report-btn']) $(id).disabled = state.busy || noStudy
  for (const b of document.querySelectorAll('#view-buttons button, #wl-presets button, #wl-form button')) b.disabled = noStudy
  const is2D = state.study && state.study.ndim === 2
  for (const b of document.querySelectorAll('#view-buttons button')) if (b.dataset.view !== 'axial') b.disabled = noStudy || is2D
  // Hounsfield presets only for CT
  for (const b of document.querySelectorAll('#wl-presets button')) b.hidden = b.dataset.wl !== 'auto' && !(state.study && state.study.modality === 'CT')
  for (const b of document.querySelectorAll('#view-buttons button')) b.classList.toggle('active', viewer && viewer.view === b.dataset.view && !noStudy)
}

const ticker = (report, what) => (job, secs) => report(`${what}: ${job.status} (${Math.round(secs)} s)`)

// ------------------------------------------------------------------ viewer
const viewer = new Viewer($('#gl'), {
  headers: authHeaders(),
  onLocation: (data) => { $('#location').textContent = viewer.locationText(data) },
  onIntensity: (wl) => {
    if (!wl) return
    if (document.activeElement !== $('#wl-window')) $('#wl-window').value = fmt(wl.window, 1)
    if (document.activeElement !== $('#wl-level')) $('#wl-level').value = fmt(wl.level, 1)
  }
})

// ------------------------------------------------------------------ study
function studySummary (s) {
  const shape = (s.shape || []).join('×')
  const sp = (s.spacing || s.spacing_mm || []).map((v) => fmt(v, 2)).join('×')
  return [s.modality, `${s.ndim}D`, shape, sp && `${sp} mm`].filter(Boolean).join(' · ')
}

async function openStudy (study, report) {
  report('loading the image')
  state.study = study
  document.body.dataset.study = study.study_id
  resetResults()
  await viewer.loadStudy(studyUrl(study.study_id, 'volume.nii.gz'), study)
  $('#study-info').textContent = studySummary(study)
  const u = new URL(window.location.href)
  u.searchParams.set('study', study.study_id)
  window.history.replaceState(null, '', u)
  await showLastSegmentation(study)
  return `study loaded: ${studySummary(study)}`
}

// A study opened again (?study=ID) comes back with its latest finished segmentation.
async function showLastSegmentation (study) {
  let jobs = []
  try {
    jobs = await getJson(`/jobs?study_id=${encodeURIComponent(study.study_id)}&status=done`)
  } catch { return }
  const segs = jobs.filter((j) => j.task === 'segment' && j.result && (j.result.findings || []).length)
  if (!segs.length) return
  const last = segs.reduce((a, b) => (String(b.finished || '') > String(a.finished || '') ? b : a))
  const findings = last.result.findings
  await viewer.showLabels(jobUrl(last.job_id, 'labels.nii.gz'), findings)
  state.findings = findings
  state.segmentJob = last.job_id
  renderLegend(findings)
  renderFindings(findings)
  $('#prompt-input').value = (last.params.prompts || []).join(', ')
}

function resetResults () {
  state.findings = []
  state.segmentJob = null
  viewer.clearLabels()
  renderFindings([])
  renderLegend([])
  $('#answer').replaceChildren()
  $('#classification').replaceChildren()
  $('#report-section').hidden = true
  $('#report-frame').srcdoc = ''
}

function upload (files) {
  if (!files.length) { setStatus('choose a file to upload first', 'error'); return }
  work('upload', async (report) => {
    const mb = files.reduce((a, f) => a + f.size, 0) / 2 ** 20
    report(`uploading ${files.length} file${files.length > 1 ? 's' : ''} (${fmt(mb, 1)} MB)`)
    const study = await uploadStudy(files)
    return openStudy(study, report)
  })
}

$('#upload-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  upload([...$('#file-input').files])
})
// files dropped on the image area are uploaded as one study
$('#viewer').addEventListener('dragover', (ev) => { ev.preventDefault(); ev.stopPropagation() }, true)
$('#viewer').addEventListener('drop', (ev) => {
  ev.preventDefault()
  ev.stopPropagation()
  upload([...(ev.dataTransfer ? ev.dataTransfer.files : [])])
}, true)

// ------------------------------------------------------------------ view controls
for (const b of document.querySelectorAll('#view-buttons button')) {
  b.addEventListener('click', () => { viewer.setView(b.dataset.view); updateControls() })
}
$('#wl-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  const w = parseFloat($('#wl-window').value)
  const l = parseFloat($('#wl-level').value)
  if (!(w > 0) || !Number.isFinite(l)) { setStatus('window must be a positive number and level a number', 'error'); return }
  viewer.setWindowLevel(w, l)
})
for (const b of document.querySelectorAll('#wl-presets button')) {
  b.addEventListener('click', () => {
    if (b.dataset.wl === 'auto') viewer.autoWindow()
    else viewer.setWindowLevel(...b.dataset.wl.split(',').map(Number))
  })
}
$('#mask-visible').addEventListener('change', () => viewer.setMaskStyle({ visible: $('#mask-visible').checked }))
$('#mask-opacity').addEventListener('input', () => viewer.setMaskStyle({ opacity: parseFloat($('#mask-opacity').value) }))

// ------------------------------------------------------------------ segment
function parsePrompts (text) {
  return text.split(/[,;\n]/).map((s) => s.trim()).filter(Boolean)
}

$('#segment-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  const prompts = parsePrompts($('#prompt-input').value)
  if (!state.study) { setStatus('upload a study first', 'error'); return }
  if (!prompts.length) { setStatus('type what to segment, e.g. "left kidney" (comma-separated for several)', 'error'); return }
  work('segment', async (report) => {
    const job = await runJob(state.study.study_id, 'segment', { prompts }, ticker(report, `segmenting ${prompts.join(', ')}`))
    const findings = (job.result && job.result.findings) || []
    state.findings = findings
    state.segmentJob = job.job_id
    const present = findings.filter((f) => f.present)
    if (findings.length) {
      report('drawing the masks')
      await viewer.showLabels(jobUrl(job.job_id, 'labels.nii.gz'), findings)
    }
    renderLegend(findings)
    renderFindings(findings)
    if (present.length) jumpTo(present[0])
    const absent = findings.filter((f) => !f.present).map((f) => f.name)
    return `segmented: ${present.map((f) => f.name).join(', ') || 'nothing found'}` + (absent.length ? `; absent: ${absent.join(', ')}` : '')
  })
})

function labelOf (f) { return f.label_value ?? f.id }

function renderLegend (findings) {
  const items = findings.filter((f) => f.present).map((f) => {
    const [r, g, b] = colorFor(labelOf(f))
    return el('div', { class: 'legend-item', dataset: { label: labelOf(f) } },
      el('span', { class: 'swatch', style: `background: rgb(${r},${g},${b})` }), f.name)
  })
  $('#legend').replaceChildren(...items)
  $('#mask-controls').hidden = !items.length
}

function measureText (f) {
  const parts = []
  if (typeof f.volume_ml === 'number') parts.push(`${fmt(f.volume_ml, 1)} mL`)
  if (typeof f.area_mm2 === 'number') parts.push(`${fmt(f.area_mm2, 0)} mm²`)
  else if (typeof f.area_px === 'number') parts.push(`${fmt(f.area_px, 0)} px`)
  if (typeof f.confidence === 'number') parts.push(`confidence ${pct(f.confidence)}`)
  const c = f.centroid_voxel || f.centroid_pixel
  if (Array.isArray(c)) parts.push(`at (${c.map((v) => fmt(v, 0)).join(', ')})`)
  return parts.join(' · ')
}

function renderFindings (findings) {
  const list = $('#findings')
  if (!findings.length) { list.replaceChildren(el('li', { class: 'muted' }, 'none yet')); return }
  list.replaceChildren(...findings.map((f) => {
    const [r, g, b] = colorFor(labelOf(f))
    const li = el('li', { class: `finding ${f.present ? 'present' : 'absent'}`, dataset: { id: f.id, name: f.name }, tabindex: '0', title: f.present ? 'show it' : 'not found in this image' },
      el('div', { class: 'finding-name' },
        el('span', { class: 'swatch', style: f.present ? `background: rgb(${r},${g},${b})` : 'background: transparent' }),
        f.name, f.present ? null : el('span', { class: 'muted' }, '(absent)')),
      el('div', { class: 'finding-meta' }, f.present ? measureText(f) : `confidence ${pct(f.confidence)}`))
    if (f.present) {
      const go = () => jumpTo(f)
      li.addEventListener('click', go)
      li.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') go() })
    }
    return li
  }))
}

function jumpTo (f) {
  const c = f.centroid_voxel || (f.centroid_pixel ? [...f.centroid_pixel, 0] : null)
  if (!c) return
  viewer.jumpToVoxel(c[0], c[1], c[2] ?? 0)
  for (const li of document.querySelectorAll('#findings li')) li.classList.toggle('selected', li.dataset.id === String(f.id))
}

// ------------------------------------------------------------------ ask
$('#ask-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  const question = $('#ask-input').value.trim()
  if (!state.study) { setStatus('upload a study first', 'error'); return }
  if (!question) { setStatus('type a question first', 'error'); return }
  work('ask', async (report) => {
    const job = await runJob(state.study.study_id, 'ask', { question }, ticker(report, 'answering'))
    const r = job.result || {}
    const meta = [r.confidence != null && `confidence ${pct(r.confidence)}`, r.question_type, r.route && `via ${r.route}`].filter(Boolean).join(' · ')
    $('#answer').replaceChildren(el('div', { class: 'answer-text' }, String(r.answer ?? '(no answer)')), el('div', { class: 'muted' }, meta))
    if (r.mask_file && (r.files || []).includes('labels.nii.gz')) {
      const f = { id: 1, label_value: 1, name: r.region || 'answer region', present: true }
      await viewer.showLabels(jobUrl(job.job_id, 'labels.nii.gz'), [f])
      renderLegend([f])
    }
    return `answered: ${r.answer}`
  })
})

// ------------------------------------------------------------------ classify
$('#classify-btn').addEventListener('click', () => {
  work('classify', async (report) => {
    const job = await runJob(state.study.study_id, 'classify', {}, ticker(report, 'classifying'))
    const r = job.result || {}
    const rows = [['modality', r.modality, r.modality_confidence], ['body region', r.body_region, r.body_region_confidence], ['view', r.view, r.view_confidence]]
      .filter(([, v]) => v != null)
      .map(([k, v, c]) => el('div', {}, el('span', { class: 'muted' }, `${k}: `), String(v), el('span', { class: 'muted' }, ` (${pct(c)})`)))
    $('#classification').replaceChildren(...rows)
    return `classified: ${[r.modality, r.body_region, r.view].filter(Boolean).join(', ')}`
  })
})

// ------------------------------------------------------------------ report
async function inlineImages (html, jobId) {
  // The report is shown in a sandboxed frame: its pictures (job files) are inlined as data URLs.
  const doc = new DOMParser().parseFromString(html, 'text/html')
  for (const img of doc.querySelectorAll('img[src]')) {
    const src = img.getAttribute('src')
    if (/^(data:|https?:|\/\/)/i.test(src) || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(src)) continue
    try {
      const blob = await (await request(`/jobs/${encodeURIComponent(jobId)}/files/${src}`)).blob()
      img.setAttribute('src', await new Promise((resolve) => { const fr = new FileReader(); fr.onload = () => resolve(fr.result); fr.readAsDataURL(blob) }))
    } catch { /* leave the broken picture */ }
  }
  const fit = doc.createElement('style') // the frame is a narrow column: a smaller type size
  fit.textContent = 'html { zoom: 0.75; }'
  doc.head.append(fit)
  return '<!doctype html>' + doc.documentElement.outerHTML
}

$('#report-btn').addEventListener('click', () => {
  work('report', async (report) => {
    const job = await runJob(state.study.study_id, 'report', {}, ticker(report, 'writing the report'))
    const r = job.result || {}
    const files = r.files || []
    $('#report-section').hidden = false
    if (files.includes('report.html')) {
      const html = await (await request(`/jobs/${encodeURIComponent(job.job_id)}/files/report.html`)).text()
      $('#report-frame').hidden = false
      $('#report-text').hidden = true
      $('#report-frame').srcdoc = await inlineImages(html, job.job_id)
    } else {
      const text = files.includes('report.txt')
        ? await (await request(`/jobs/${encodeURIComponent(job.job_id)}/files/report.txt`)).text()
        : JSON.stringify(r, null, 2)
      $('#report-frame').hidden = true
      $('#report-text').hidden = false
      $('#report-text').textContent = text
    }
    if (files.includes('labels.nii.gz') && files.includes('findings.json')) {
      // the report's own segmentation: its masks and findings
      const seg = await (await request(`/jobs/${encodeURIComponent(job.job_id)}/files/findings.json`)).json()
      const findings = seg.findings || []
      await viewer.showLabels(jobUrl(job.job_id, 'labels.nii.gz'), findings)
      state.findings = findings
      renderLegend(findings)
      renderFindings(findings)
    }
    return 'report ready'
  })
})

// ------------------------------------------------------------------ start
async function start () {
  updateControls()
  try {
    await viewer.init()
  } catch (e) {
    setStatus(`this browser cannot show images (WebGL2 needed): ${describeError(e)}`, 'error')
    return
  }
  const sid = new URLSearchParams(window.location.search).get('study')
  if (sid) {
    await work('open study', async (report) => openStudy(await getJson(`/studies/${encodeURIComponent(sid)}`), report))
  } else {
    setStatus('ready: upload a study')
  }
  updateControls()
}

document.body.dataset.study = ''
window.medground = { viewer, state } // for tests and the console
start()
