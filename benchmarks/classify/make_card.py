"""Writes the shipped classify.card.json from the recipe-5 metrics (see benchmarks/results/classify.md);
OLD_CARD: the previous card (its notes and label lists are kept). Run from the repository root."""
import sys
import json
c = json.load(open('cache/classify/final5/classify.card.json'))
old = json.load(open(sys.argv[1] if len(sys.argv) > 1 else 'src/medground/models/weights/classify.card.json'))
s5 = json.load(open('cache/classify/metrics_split5.json'))
lodo = json.load(open('cache/classify/metrics_lodo5.json'))
fa = json.load(open('cache/classify/file_accuracy.json'))
c['evaluation'] = {'metrics_split5': s5, 'metrics_lodo5': lodo, 'end_to_end_held_out_files': fa}
c['evaluation_note'] = ("metrics_split5: the same recipe trained on 80% of patients/source images, scored on the held-out 20% "
    "(real pictures only, network alone, without the test-time flips); metrics_lodo5: 5 whole datasets held out (jsrt-cxr, busi, "
    "chaos-mr, btcv-ct, drive); end_to_end_held_out_files: load -> classify (with the test-time flips) on held-out files with the "
    "split5 weights; the shipped weights were then trained on everything (dataset5). See benchmarks/results/classify.md.")
c['notes'] = old['notes'] + ["dataset5 = dataset3 + the BTCV/CHAOS slice files in their stored orientation (without them the "
    "orientation of abdominal slices was a CT/MR cue and CHAOS MR files were taken for CT); classify averages the modality "
    "probabilities over 4 flips of each picture."]
r = s5['held_out_real']
c['summary'] = {'held_out_modality_accuracy': round(r['modality']['accuracy'], 4),
    'held_out_mri_accuracy': r['modality']['per_class']['MRI']['accuracy'],
    'held_out_body_region_accuracy': round(r['body_region']['accuracy'], 4), 'held_out_view_accuracy': round(r['view']['accuracy'], 4),
    'end_to_end_held_out_files_modality_accuracy': round(fa['accuracy'], 4),
    'end_to_end_per_modality': {k: round(v['accuracy'], 4) for k, v in fa['per_modality'].items()},
    'leave_datasets_out_modality_accuracy_per_source': {k: v['accuracy'] for k, v in lodo['held_out_real']['modality']['per_source'].items()}}
c['labels'] = old['labels']
json.dump(c, open('src/medground/models/weights/classify.card.json', 'w'), indent=1); open('src/medground/models/weights/classify.card.json', 'a').write('\n')
print(c['summary'])
