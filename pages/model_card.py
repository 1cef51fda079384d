"""Model card: the shipped models' card, weight hashes, measured latency and intended use."""

import json

import streamlit as st

from brainseg.app import dashboard as dash

st.title("Model card")
dash.sidebar()
st.error("Intended use: research and education on lower-grade glioma FLAIR MRI. Not a medical device; "
         "not for diagnosis or treatment decisions.")
cascade = dash.require_cascade()
live = dash.models_dir()
finetune = cascade.segmenter.metadata.get("finetune") if cascade is not None else None
st.info(f"Live models folder: `{live}`" + (
    f" — fine-tuned by `brainseg finetune` on {finetune['corrected_slices']} corrected slices "
    f"(+{finetune['replay_slices']} replayed training slices, {finetune['epochs']} epochs) from the segmenter "
    f"`{finetune['parent_segmenter_sha256'][:16]}…` of `{finetune['parent_models_dir']}`." if finetune else
    f" — as trained by `{dash.training_command(cascade)}` (see the card below)."))
if (live / "FINETUNE.md").is_file():
    with st.expander("Fine-tuning record (FINETUNE.md): before / after on the validation split", expanded=True):
        st.markdown((live / "FINETUNE.md").read_text())
if cascade is not None:
    cols = st.columns(2)
    for col, model in zip(cols, (cascade.classifier, cascade.segmenter), strict=True):
        col.markdown(f"**{model.role}** `{model.path.name}` — input {model.spec.size}×{model.spec.size}, "
                     f"{model.spec.scaling} scaling")
        col.code(f"sha256 {model.sha256}", language=None)
bench_path = dash.models_dir() / "bench.json"
if bench_path.is_file():
    bench = json.loads(bench_path.read_text())
    cols = st.columns(5)
    ratio = bench.get("patient_over_reference")
    cols[0].metric("patient / reference", "n/a" if ratio is None else f"{ratio:.2f}×",
                   help="median whole-patient time over the seed ResUNet at 256 on 36 slices, timed in the same "
                        "process (comparable across machines; goal ≤ 0.5)")
    cols[1].metric("s per patient (median)", f"{bench['patient_seconds']['median']:.2f}")
    cols[2].metric("ms per slice", f"{bench['ms_per_slice']:.1f}")
    cols[3].metric("model load, fresh process (s)", f"{bench.get('model_load_seconds_cold', float('nan')):.1f}")
    cols[4].metric("peak memory (MB)", f"{bench['peak_rss_mb']:.0f}")
    st.caption(f"Measured with `brainseg bench` on {bench['machine']['cpu']} ({bench['machine']['cores']} cores); "
               "absolute times differ up to 3× between machines, the ratio does not.")
out_of_fold = dash.out_of_fold_report()
if out_of_fold is not None:
    import pandas as pd

    from brainseg.core.metrics import DICE_LOSS_PARTS
    from brainseg.reports.card_markdown import GOALS
    from brainseg.reports.figures import crossval_dice_figure, dice_loss_figure, gate_tradeoff_figure

    report_name, crossval = out_of_fold
    st.caption(f"Out-of-fold plots from `{report_name}` ({crossval['slice_score']} score): the cross-validation "
               "report behind the live operating point where it names one.")
    per_patient = pd.DataFrame(crossval["per_patient"])
    if "tumor_pixels" in per_patient:
        st.plotly_chart(crossval_dice_figure(per_patient, goal=GOALS["dice"]), width="stretch")
    if set(DICE_LOSS_PARTS) <= set(per_patient):
        st.plotly_chart(dice_loss_figure(per_patient), width="stretch")
    tradeoff = crossval.get("final_fit_choices", {}).get("gate_tradeoff")
    if tradeoff:
        st.plotly_chart(gate_tradeoff_figure(tradeoff, cascade.default_threshold if cascade else None),
                        width="stretch")
card = dash.models_dir() / "MODEL_CARD.md"
if card.is_file():
    st.markdown(card.read_text())
else:
    st.warning(f"{card} is missing.")
