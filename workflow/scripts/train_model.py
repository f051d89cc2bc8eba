"""Fine-tune round k's model on its filtered data (in curriculum order for SOFT+) and save
the merged model folder; with k > 1 GPUs the training runs as k torchrun processes."""
from soft.train.launch import launch, processes_for, write_spec
from soft.runtime import log, run, set_threads
from soft.train.finetune import check_train_method, run_training


def main(smk):
    set_threads(smk.threads)
    check_train_method(smk.params.settings["method"])
    spec = {
        "data": list(smk.input.data),
        "scores": list(smk.input.scores),
        "init": str(smk.input.init),
        "out": smk.output[0],
        "principles": smk.input.principles,
        "settings": smk.params.settings,
        "curriculum": smk.params.curriculum,
        "seed": smk.params.seed,
        "round": smk.params.round,
        "work_dir": smk.params.work_dir,
        "layout": smk.params.layout,
    }
    nproc = processes_for(smk.resources.get("gpu", 0))
    if nproc > 1:
        log.info("training with %d processes (one per GPU) under torchrun", nproc)
        launch(nproc, write_spec(f"{smk.params.work_dir}.launch.json", spec),
               log_path=smk.log[0] if len(smk.log) else None)
    else:
        run_training(spec)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
