"""Fine-tune round k's model on its filtered data and save the merged model folder."""
from soft.principles import load_principles
from soft.records import read_training_data
from soft.runtime import run, set_threads
from soft.train import data_files_card, train_model


def main(smk):
    set_threads(smk.threads)
    settings = smk.params.settings
    card = {
        "round": smk.params.round,
        "init": str(smk.input.init),
        "init_mode": settings["init"],
        "data": data_files_card(smk.input.data),
        "seed": smk.params.seed,
        "train": settings,
    }
    records = [r for path in smk.input.data for r in read_training_data(path)]
    train_model(records, smk.input.init, smk.output[0],
                load_principles(smk.input.principles), settings, smk.params.seed, card,
                smk.params.work_dir)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
