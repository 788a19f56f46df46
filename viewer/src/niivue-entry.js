// The one bundled dependency of the medground viewer: NiiVue (BSD-2-Clause), re-exported as an ES module.
export { Niivue, NVImage, SLICE_TYPE, MULTIPLANAR_TYPE, DRAG_MODE, SHOW_RENDER } from '@niivue/niivue'
