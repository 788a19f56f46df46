// The image view: NiiVue (bundled in vendor/niivue.js) showing a study and its label map.
import { Niivue, SLICE_TYPE, DRAG_MODE } from './vendor/niivue.js'

// The same colours as medground.viz.overlay.PALETTE: label value k is drawn in PALETTE[(k - 1) % 18].
export const PALETTE = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 190], [0, 128, 128], [230, 190, 255],
  [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195], [128, 128, 0], [255, 215, 180]
]
export const colorFor = (k) => PALETTE[(k - 1) % PALETTE.length]

const VIEWS = {
  multiplanar: SLICE_TYPE.MULTIPLANAR,
  axial: SLICE_TYPE.AXIAL,
  coronal: SLICE_TYPE.CORONAL,
  sagittal: SLICE_TYPE.SAGITTAL
}

export class Viewer {
  constructor (canvas, { headers = {}, onLocation = () => {}, onIntensity = () => {} } = {}) {
    this.canvas = canvas
    this.headers = headers
    this.onLocation = onLocation
    this.onIntensity = onIntensity
    this.study = null
    this.labels = null
    this.maskOpacity = 0.6
    this.maskVisible = true
  }

  async init () {
    this.nv = new Niivue({
      backColor: [0, 0, 0, 1],
      crosshairColor: [0.15, 0.75, 1.0, 0.8],
      crosshairWidth: 0.25, // percent of the field of view
      crosshairWidthUnit: 'percent',
      dragMode: DRAG_MODE.windowing, // right-drag: horizontal = window, vertical = level
      multiplanarShowRender: 0, // no 3D render tile in the multiplanar view
      isColorbar: false,
      dragAndDropEnabled: false, // dropped files go to the server (app.js), not into the browser only
      showLegend: false, // our own legend is beside the image
      loadingText: '',
      logLevel: 'warn'
    })
    await this.nv.attachToCanvas(this.canvas)
    this.nv.onLocationChange = (data) => this.onLocation(data)
    this.nv.onIntensityChange = () => this.onIntensity(this.windowLevel())
    this.nv.onMouseUp = () => this.onIntensity(this.windowLevel())
  }

  get base () { return this.nv.volumes[0] || null }

  // Load a study (its NIfTI URL) as the background volume; 2D studies are shown as stored
  // (row 0 at the top, column 0 on the left), volumes in radiological convention.
  async loadStudy (url, study) {
    this.study = study
    this.labels = null
    while (this.nv.volumes.length) this.nv.removeVolume(this.nv.volumes[this.nv.volumes.length - 1])
    await this.nv.loadVolumes([{ url, name: 'study.nii.gz', headers: this.headers }])
    const is2D = study.ndim === 2
    if (is2D) {
      // pictures: 2nd-98th percentile of the whole picture (NiiVue's default looks at the centre only,
      // which over-contrasts radiographs)
      this.#asStored(this.base)
      const v = this.base
      const step = Math.max(1, Math.floor(v.img.length / 200000))
      const sample = Float64Array.from({ length: Math.floor(v.img.length / step) }, (_, i) => v.img[i * step]).sort()
      const lo = sample[Math.floor(0.02 * (sample.length - 1))]
      const hi = sample[Math.ceil(0.98 * (sample.length - 1))]
      if (hi > lo) {
        v.cal_min = v.intensityRaw2Scaled(lo)
        v.cal_max = v.intensityRaw2Scaled(hi)
      }
      this.nv.updateGLVolume()
    } else if (study.modality === 'CT') {
      this.setWindowLevel(400, 40) // soft tissue
    }
    this.nv.setRadiologicalConvention(!is2D)
    this.nv.opts.isOrientationTextVisible = !is2D // a picture has no patient axes
    const thin = (study.shape && study.shape[2] < 10) // a few slices: the other planes would be slivers
    this.setView(is2D || thin ? 'axial' : 'multiplanar')
    this.center()
    this.onIntensity(this.windowLevel())
  }

  // A picture's affine that displays it as stored: x to the right, y (rows) downwards.
  #asStored (vol) {
    const h = vol.hdr
    const sx = Math.abs(h.pixDims[1]) || 1
    const sy = Math.abs(h.pixDims[2]) || 1
    const sz = Math.abs(h.pixDims[3]) || 1
    const ny = h.dims[2]
    vol.setAffine([[sx, 0, 0, 0], [0, -sy, 0, (ny - 1) * sy], [0, 0, sz, 0], [0, 0, 0, 1]])
    this.nv.updateGLVolume()
  }

  setView (name) {
    if (!(name in VIEWS)) throw new Error(`unknown view ${name}`)
    this.view = name
    this.nv.setSliceType(VIEWS[name])
  }

  windowLevel () {
    const v = this.base
    if (!v) return null
    return { window: v.cal_max - v.cal_min, level: (v.cal_max + v.cal_min) / 2 }
  }

  setWindowLevel (window, level) {
    const v = this.base
    if (!v || !(window > 0) || !Number.isFinite(level)) return
    v.cal_min = level - window / 2
    v.cal_max = level + window / 2
    this.nv.updateGLVolume()
    this.onIntensity(this.windowLevel())
  }

  autoWindow () {
    const v = this.base
    if (!v) return
    v.cal_min = v.robust_min
    v.cal_max = v.robust_max
    this.nv.updateGLVolume()
    this.onIntensity(this.windowLevel())
  }

  // Show a label map (value k = k-th finding) over the study, coloured like the legend.
  async showLabels (url, findings) {
    this.clearLabels()
    const n = Math.max(0, ...findings.map((f) => f.label_value ?? f.id ?? 0))
    const R = [0]; const G = [0]; const B = [0]; const A = [0]; const I = [0]; const labels = ['']
    for (let k = 1; k <= n; k++) {
      const [r, g, b] = colorFor(k)
      R.push(r); G.push(g); B.push(b); A.push(255); I.push(k)
      const f = findings.find((x) => (x.label_value ?? x.id) === k)
      labels.push(f ? f.name : `label ${k}`)
    }
    await this.nv.addVolumeFromUrl({ url, name: 'labels.nii.gz', headers: this.headers, opacity: this.maskVisible ? this.maskOpacity : 0 })
    const lv = this.nv.volumes[this.nv.volumes.length - 1]
    if (this.study && this.study.ndim === 2) lv.setAffine(this.base.hdr.affine)
    lv.setColormapLabel({ R, G, B, A, I, labels })
    this.labels = lv
    this.labelNames = labels
    this.nv.updateGLVolume()
  }

  clearLabels () {
    if (this.labels) {
      this.nv.removeVolume(this.labels)
      this.labels = null
    }
  }

  setMaskStyle ({ visible = this.maskVisible, opacity = this.maskOpacity } = {}) {
    this.maskVisible = visible
    this.maskOpacity = opacity
    if (this.labels) {
      const i = this.nv.volumes.indexOf(this.labels)
      if (i >= 0) this.nv.setOpacity(i, visible ? opacity : 0)
    }
  }

  // World mm -> voxel (x, y, z) of the study as stored (NiiVue's own voxels are in RAS order).
  mmToVoxel (mm) {
    const A = this.base.hdr.affine
    const [a, b, c] = [A[0], A[1], A[2]]
    const m = [[a[0], a[1], a[2]], [b[0], b[1], b[2]], [c[0], c[1], c[2]]]
    const det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
      m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    const inv = [
      [(m[1][1] * m[2][2] - m[1][2] * m[2][1]) / det, (m[0][2] * m[2][1] - m[0][1] * m[2][2]) / det, (m[0][1] * m[1][2] - m[0][2] * m[1][1]) / det],
      [(m[1][2] * m[2][0] - m[1][0] * m[2][2]) / det, (m[0][0] * m[2][2] - m[0][2] * m[2][0]) / det, (m[0][2] * m[1][0] - m[0][0] * m[1][2]) / det],
      [(m[1][0] * m[2][1] - m[1][1] * m[2][0]) / det, (m[0][1] * m[2][0] - m[0][0] * m[2][1]) / det, (m[0][0] * m[1][1] - m[0][1] * m[1][0]) / det]
    ]
    const d = [mm[0] - a[3], mm[1] - b[3], mm[2] - c[3]]
    return inv.map((row) => row[0] * d[0] + row[1] * d[1] + row[2] * d[2])
  }

  // The crosshair's place in words: voxel (medground's x, y, z as stored), world mm, value, mask name.
  locationText (data) {
    if (!data || !data.values || !data.values.length || !this.study) return ''
    const b = data.values[0]
    const vox = this.mmToVoxel(data.mm).map((v) => Math.round(v))
    const val = Number.isFinite(b.value) ? +b.value.toFixed(2) : b.value
    let s = this.study.ndim === 2
      ? `x ${vox[0]}, y ${vox[1]} = ${val}`
      : `voxel ${vox.join(', ')} = ${val}\n${Array.from(data.mm).slice(0, 3).map((v) => v.toFixed(1)).join(', ')} mm (RAS)`
    const i = this.labels ? this.nv.volumes.indexOf(this.labels) : -1
    if (i >= 0 && data.values[i]) {
      const k = Math.round(data.values[i].value)
      if (k > 0 && this.labelNames && this.labelNames[k]) s += `\n${this.labelNames[k]}`
    }
    return s
  }

  center () {
    this.nv.scene.crosshairPos = [0.5, 0.5, 0.5]
    this.nv.createOnLocationChange()
    this.nv.drawScene()
  }

  // Move the crosshair to a voxel (x, y, z) of the study as stored (medground's [x, y, z] order).
  jumpToVoxel (x, y, z = 0) {
    const v = this.base
    if (!v) return
    const A = v.hdr.affine
    const mm = [0, 1, 2].map((r) => A[r][0] * x + A[r][1] * y + A[r][2] * z + A[r][3])
    const frac = v.convertMM2Frac(mm)
    this.nv.scene.crosshairPos = [0, 1, 2].map((i) => Math.min(1, Math.max(0, frac[i])))
    this.nv.createOnLocationChange()
    this.nv.drawScene()
  }

  // Where a voxel (x, y, z) of the study as stored is drawn, in CSS pixels of the page
  // (for tests and tools); null when it is not on screen.
  voxelToPage (x, y, z = 0) {
    const v = this.base
    if (!v) return null
    const A = v.hdr.affine
    const mm = [0, 1, 2].map((r) => A[r][0] * x + A[r][1] * y + A[r][2] * z + A[r][3])
    const pos = this.nv.frac2canvasPos(v.convertMM2Frac(mm))
    if (!pos) return null
    const r = this.canvas.getBoundingClientRect()
    const dpr = this.nv.uiData.dpr || 1
    return [r.left + pos[0] / dpr, r.top + pos[1] / dpr]
  }

  // The image tiles on screen, in CSS pixels relative to the page (for tests and tools).
  tiles () {
    const r = this.canvas.getBoundingClientRect()
    const dpr = this.nv.uiData.dpr || 1
    return this.nv.screenSlices.map((s) => {
      const [l, t, w, h] = s.leftTopWidthHeight
      return { axCorSag: s.axCorSag, left: r.left + l / dpr, top: r.top + t / dpr, width: w / dpr, height: h / dpr }
    })
  }
}
