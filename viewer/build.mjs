// Bundle NiiVue (and its dependencies) into one ES module for the medground web page:
// src/medground/serve/static/vendor/niivue.js, with the licences of everything bundled beside it.
// The page's own code (static/*.js, *.css, index.html) is plain JS/CSS and is not built.
import { build } from 'esbuild'
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const outDir = join(here, '..', 'src', 'medground', 'serve', 'static', 'vendor')
mkdirSync(outDir, { recursive: true })
const readJson = (p) => JSON.parse(readFileSync(p, 'utf8'))
const nvPkg = readJson(join(here, 'node_modules', '@niivue', 'niivue', 'package.json'))

const result = await build({
  entryPoints: [join(here, 'src', 'niivue-entry.js')],
  outfile: join(outDir, 'niivue.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2020'],
  minify: true,
  legalComments: 'none',
  sourcemap: false,
  metafile: true,
  banner: { js: `/*! NiiVue ${nvPkg.version} (BSD-2-Clause) and its dependencies, bundled by medground viewer/build.mjs; licences: THIRD_PARTY_LICENSES.txt */` },
  logLevel: 'warning'
})

// Every npm package that ended up in the bundle, with its licence text.
const pkgs = new Set()
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//)
  if (m) pkgs.add(m[1])
}
const versions = {}
let notices = 'Third-party software bundled in niivue.js (built from viewer/ by scripts/build_viewer.sh).\n'
for (const name of [...pkgs].sort()) {
  const dir = join(here, 'node_modules', name)
  const pkg = readJson(join(dir, 'package.json'))
  versions[name] = pkg.version
  const local = join(here, 'licenses', `${name.replace(/^@[^/]+\//, '')}-LICENSE`)
  const files = readdirSync(dir).filter((f) => /^(licen[cs]e|copying)/i.test(f))
  let text = files.length ? readFileSync(join(dir, files[0]), 'utf8') : existsSync(local) ? readFileSync(local, 'utf8') : null
  if (!text) throw new Error(`no licence text for bundled package ${name}: add viewer/licenses/${name}-LICENSE`)
  notices += `\n${'='.repeat(78)}\n${name} ${pkg.version} (${pkg.license})\n${'='.repeat(78)}\n${text.trim()}\n`
}
writeFileSync(join(outDir, 'THIRD_PARTY_LICENSES.txt'), notices)
writeFileSync(join(outDir, 'VERSIONS.json'), JSON.stringify(versions, null, 2) + '\n')
console.log(`built ${join(outDir, 'niivue.js')} (NiiVue ${nvPkg.version}; ${pkgs.size} packages bundled)`)
