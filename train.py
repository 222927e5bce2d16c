"""Train a DCGAN on Fashion-MNIST: the GAN on one page.

A generator G turns random noise z into images; a discriminator D scores images, high
for real ones. Every batch of real images x, they take one step each against the other:

    D raises  log D(x) + log(1 - D(G(z)))   tell the real images from G's
    G raises  log D(G(z))                   make D take G's images for real

G's objective is the non-saturating form of Goodfellow et al. (2014). The minimax game
says "G lowers log(1 - D(G(z)))", but early on, when D rejects G's images with ease, that
has almost no gradient; raising log D(G(z)) has the same goal and a strong gradient.
Both objectives are binary cross-entropies of D's logits (models.py).

The images we look at come from an average of G's recent weights (averaging.py), which
is steadier and better than G at any single step; training itself only ever uses G.

    python train.py                  # the defaults below; rerun the same command to resume or go on
    python train.py --epochs 5 --max-images 2000 --out-dir smoke   # a quick look
    python train.py --hour --out-dir hour    # larger models for an hour: better images

From a notebook:

    from train import train, load_training_dataset
    train_dataset = load_training_dataset()
    history = train(train_dataset, EPOCHS)

This file is the lesson. What keeps a run alive (checkpoints and resuming, the metrics
file, signals, the time budget, NaN losses) is controller.py and the modules it names;
what differs on several devices is devices.py.
"""

import os

# Hide TensorFlow's C++ start-up chatter when run as a script; real errors still show.
if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import sys  # noqa: E402

import tensorflow as tf  # noqa: E402

import augment  # noqa: E402
import averaging  # noqa: E402
import cli  # noqa: E402
import controller  # noqa: E402
import data  # noqa: E402
import devices  # noqa: E402
import models  # noqa: E402
import stopping  # noqa: E402
import storage  # noqa: E402

# ----------------------------------------------------------------------------------------
# Hyperparameters: every flag of the command line defaults to one of these.
EPOCHS = 15  # 13-20 minutes on the 2-core CPUs with AVX-512 it was timed on (README); FID below 30 within 4
# A ceiling on the default run: a CPU too slow for EPOCHS in half an hour (an AMD EPYC of
# the first Zen generation trains about 90 img/s, under 3 epochs in 30 minutes) stops then,
# saving everything, with its learning rates still near their start (they halve by the
# epoch), and the same command run again goes on from there. On the faster CPUs the epochs
# end first, and the run is the same as without it. 28 minutes of training, as start-up and
# saving add about 80 s on that CPU (a 1-minute budget took 140 s from command to last line).
MAX_MINUTES = 28.0
BATCH_SIZE = 32  # more updates at the same images/s: FID 55 against 62 (batch 64) after 5 minutes
LATENT_DIM = models.LATENT_DIM  # 100, the DCGAN paper's noise size (defined in models.py)
GENERATOR_LEARNING_RATE = models.GENERATOR_LEARNING_RATE  # 5e-4: faster than the paper's 2e-4 per minute
# 5e-4, the same as G's. 7.5e-4 over the hour raised recall to 0.77 but precision fell to
# 0.695 and FID rose to 8.9 from 6.9 (seed 1, seventeenth round): a stronger D trades one for the other.
# 6e-4 cost as much FID (9.2) and bought no recall (0.74; eighteenth round). D ahead by a
# slower G (4.2e-4) did no better: on a Zen 3's hour (counted on an AMD EPYC Zen 4) it
# ended three seeds at FID 7.4 against `--hour`'s 7.1 and recall 0.741 against 0.736, and
# on a Zen 4's hour at FID 8.2 against 6.6 (thirty-fourth to thirty-sixth rounds).
DISCRIMINATOR_LEARNING_RATE = models.DISCRIMINATOR_LEARNING_RATE
BETA_1 = models.BETA_1  # 0: no momentum; better than the DCGAN paper's 0.5 with the averaged G
# 0.999, Adam's default. StyleGAN2's 0.99 ended the hour at FID 8.5 against 8.2 (seed 2, means
# over five noise seeds; recall 0.75 against 0.74): fourteenth round.
BETA_2 = models.BETA_2
LABEL_SMOOTHING = models.LABEL_SMOOTHING  # 0: one-sided 0.1 gave the same FID after 5 minutes
# None: translation,cutout gave FID 116, not 84, after 5 minutes; over the hour translation
# alone let G's images drift off centre (FID 35, not 12, and recall 0.46 after 20 minutes).
AUGMENTATIONS = ()
# The architecture (models.py says why each): G upsamples with transposed convolutions and
# has one extra 3x3 convolution per resolution; D plain, with the minibatch feature.
# Channels: G (128, 64) at 7x7 and 14x14, D (64, 128) at 14x14 and 7x7. Wider ones learn
# more per image but less per minute up to 30 minutes, and more only over an hour (HOUR
# below): not the default, which must stay under 30 minutes.
GENERATOR_FILTERS = models.GENERATOR_FILTERS
DISCRIMINATOR_FILTERS = models.DISCRIMINATOR_FILTERS
GENERATOR_UPSAMPLING = models.GENERATOR_UPSAMPLING  # "transposed"
GENERATOR_EXTRA_CONVOLUTIONS = models.GENERATOR_EXTRA_CONVOLUTIONS  # 1
DISCRIMINATOR_EXTRA_CONVOLUTIONS = models.DISCRIMINATOR_EXTRA_CONVOLUTIONS  # 0
MINIBATCH_STDDEV = models.MINIBATCH_STDDEV  # True
MINIBATCH_GROUP_SIZE = models.MINIBATCH_GROUP_SIZE  # 4 images per group of that feature
PACK = models.PACK  # 1: D judges one image at a time, not PacGAN's packs
DISCRIMINATOR_HEAD_CONVOLUTIONS = models.DISCRIMINATOR_HEAD_CONVOLUTIONS  # 1: D weighs the batch's variety
DISCRIMINATOR_HEAD_FILTERS = models.DISCRIMINATOR_HEAD_FILTERS  # 32: fewer than D's 128 at 7x7
SPECTRAL_NORM = models.SPECTRAL_NORM  # False
# Both rates halve every 12 epochs (0.45x in the default run's last epoch): late updates
# refine instead of wander. FID 12.8 against 14.5 with constant rates after 20 minutes
# (seed 0; seed 1: 11.7), 9.8 against 13.3 after 40. Halving every 24 epochs instead was
# worse at every mark up to 40 minutes and the same after 60: the hour's limit is the model.
# In epochs, as the default's length is, so it trains alike on every CPU; a run of so many
# minutes (HOUR below) halves them by the minute instead (--lr-half-life 21min).
LEARNING_RATE_HALF_LIFE = 12.0
# The fewest epochs a half-life in minutes may come to (None: no floor): the default's is in
# epochs already; HOUR's below keeps a slow CPU's hour from annealing its few epochs.
LEARNING_RATE_MIN_HALF_LIFE = None
# 0 for the default: gamma 0.1 gave FID 9.4, not 9.8, after an hour (one seed: within seed
# noise), and its gain comes late in a run (HOUR below uses it).
R1_WEIGHT = models.R1_WEIGHT
R1_INTERVAL = models.R1_INTERVAL  # 16, StyleGAN2's lazy regularization
EMA_HALF_LIFE_IMAGES = averaging.HALF_LIFE_IMAGES  # the shown G averages G's weights over about this many images
EMA_WARMUP_FRACTION = averaging.WARMUP_FRACTION  # early on, over at most this fraction of the images seen
SEED = None  # None draws a seed and logs it; pass one to repeat a run exactly
NUM_EXAMPLES_TO_GENERATE = 64  # the fixed noise batch behind every epoch grid (8x8)
OUT_DIR = storage.OUT_DIR  # "training_output" in the current directory
CHECKPOINT_EVERY_MINUTES = controller.CHECKPOINT_EVERY_MINUTES  # 5: a kill -9 loses at most that
EVALUATION_SAMPLES = controller.EVALUATION_SAMPLES  # 10,000 images per FID, as many as the test set
# ----------------------------------------------------------------------------------------
# An hour instead (`--hour`): larger models learn more from each image but see fewer, so
# they pay only in longer runs. G 192/96 with a third layer of 32 channels at 28x28 and D
# 96/192 train at 0.51x the default's images/s and reach FID 6.8, 6.9 and 8.5 after 60
# minutes (seeds 0, 1, 2), where the default stops improving at 9.8 (benchmarks/RESULTS.md,
# ninth to twelfth rounds; AMD EPYC, Zen 4). Their recall is 0.76, 0.73 and 0.74. With a
# narrow head in D (below) the same seeds end at 7.1, 5.2 and 5.8, recall 0.76 at each
# (nineteenth and twentieth rounds; AMD EPYC, Zen 5).
HOUR = {
    "max_minutes": 60.0,  # the budget ends the run
    # Only an upper bound: an hour is about 23 epochs on the AMD EPYC (380 img/s), 39 on an
    # Intel Xeon with AMX (650 img/s).
    "epochs": 100,
    "generator_filters": (192, 96, 32),
    "discriminator_filters": (96, 192),
    # The rates halve every 21 minutes of training, to 0.14x at the hour's end (on a CPU
    # faster than 286 img/s, see below).
    # On the AMD EPYC that is every 8 epochs: FID 6.8 and 6.9 after 60 minutes (seeds 0 and
    # 1), where every 14 epochs gave 7.1 and 7.7 and every 6 was level or behind (tenth to
    # thirteenth rounds). On the AMX Xeon every 8 epochs fell to 0.04x and stopped improving
    # after 40 minutes (FID 8.1 at 60), where every 13.6, the same 21 minutes, reached 6.6
    # and, at a second seed, 6.3 (fifteenth and sixteenth rounds; recall 0.74-0.75).
    "lr_half_life": cli.HalfLife(21.0, "minutes"),
    # But no faster than every 6 epochs: on a slow CPU 21 minutes are few epochs (3.1 on a
    # Zen 3 at 146 img/s, where the rates would end the hour's 8.8 epochs at 0.16x). With
    # a floor near 6 (seed 0 halving every 6.1 epochs, seed 1 every 6), recall after such an
    # hour rose at both seeds tried, 0.717 to 0.738 and 0.704 to 0.732 (means over five
    # noise seeds; precision 0.76-0.77 throughout), while FID went 6.9 to 6.3 and 5.7 to
    # 7.4, both still under 0.2x the baseline's 43 there (twenty-eighth round, that hour
    # counted on a Zen 5). Above 286 img/s 21 minutes are more than 6 epochs: unchanged.
    "lr_min_half_life": 6.0,
    # Over 40,000 images the average ended 0.0-0.4 higher than over 100,000 in all six hour
    # runs (tenth to twelfth rounds). Over 200,000 it ended lower again on an AMX Xeon's hour
    # (1.95 million images): by 0.14 and 0.17 as means over five noise seeds, at seeds 0 and
    # 1, lower at each of the ten (twenty-seventh and twenty-ninth rounds). The warm-up holds
    # the average to a tenth of the images seen, so it differs from 100,000 only after a
    # million images, an hour above 278 img/s: a slower CPU's hour is unchanged. A Zen 3's
    # hour ends lower with a shorter warm-up (0.025: 6.2 against 6.9), but that would shorten
    # the Xeon's average too, to the length that lost there (thirty-first round).
    "ema_half_life": 200_000.0,
    # One 3x3 convolution of 32 channels after the minibatch feature lets D weigh how varied
    # the batch is against what each image shows, at no measurable cost in speed (AMD EPYC,
    # Zen 5). It is far ahead up to 30 minutes (FID 20-22 against 32-37 after 5, 5.7-7.9
    # against 9.0-10.8 after 30) and ends the hour at 7.1, 5.2 and 5.8 (seeds 0-2) against
    # 6.8, 6.9 and 8.5, with precision 0.78-0.80 against 0.70-0.72 and recall 0.76 at each
    # against 0.73-0.76. A head as wide as D's last layer (192) drew the classes unevenly
    # (FID 16.2 at seed 1); 64 channels ended at 7.8, still tilted (nineteenth round).
    # The default has had the same head since (models.py); it is named here so that the
    # hour keeps it whatever the default becomes.
    "discriminator_head_convolutions": 1,
    "discriminator_head_filters": 32,
    # R1 on D's gradient at real images, gamma 0.1 every 16 steps (0.96x the images/s in
    # float32, 0.98x in mixed_bfloat16): D's verdict stays flat around the real images, so
    # the small late steps of G follow a smoother signal. On a Zen 3's hour it gains only
    # after 30 to 40 minutes and ended three seeds at FID 5.7, 5.8 and 5.7 against 6.9, 7.4
    # and 7.1, precision 0.767 against 0.766, recall 0.728 against 0.736; a Zen 4's hour,
    # ahead from 20 minutes, at 2.9 against 6.6, recall 0.775 against 0.770 (means over five
    # noise seeds; thirty-seventh and thirty-eighth rounds, counted on an AMD EPYC Zen 4).
    "r1_weight": 0.1,
}
MAX_EPOCHS, MAX_BATCH_SIZE, MAX_LATENT_DIM = controller.MAX_EPOCHS, 65_536, 10_000  # catch typos


@tf.function
def train_step(real_images, generator, discriminator, generator_optimizer, discriminator_optimizer,
               noise_seed, label_smoothing=LABEL_SMOOTHING, augmentations=AUGMENTATIONS, r1_weight=R1_WEIGHT,
               r1_interval=R1_INTERVAL):
    """One update of D and one of G, both from the same forward pass.

    Args:
        real_images: float32 batch (batch, 28, 28, 1) in [-1, 1].
        generator, discriminator: the models to train.
        generator_optimizer, discriminator_optimizer: their optimizers, already built
            (`optimizer.build(model.trainable_variables)`): a tf.function may create
            variables only on its first trace.
        noise_seed: int64 scalar; with the optimizer's step counter it seeds this step's
            noise, so a resumed run draws exactly the noise an uninterrupted one would have.
        label_smoothing: one-sided label smoothing of D's real targets.
        augmentations: names from augment.AUGMENTATIONS applied to every image D sees.
        r1_weight, r1_interval: the R1 penalty on D, gamma / 2 * E|grad_x D(x)|^2 over real
            images (Mescheder et al., 2018), added every r1_interval steps, multiplied by
            r1_interval to keep its average weight; a weight of 0 leaves it out.

    Returns:
        A dict of float32 scalars: d_loss, g_loss, and d_real / d_fake, D's mean output
        (a probability) on real images, D(x), and on generated ones, D(G(z)).
    """
    step_seed = tf.stack([tf.cast(noise_seed, tf.int64), tf.cast(generator_optimizer.iterations, tf.int64)])
    noise = devices.sample_noise(real_images, generator.input_shape[-1], step_seed)  # z ~ N(0, 1)

    # Two tapes record one forward pass: G makes images, D scores real and generated ones.
    with tf.GradientTape() as generator_tape, tf.GradientTape() as discriminator_tape:
        fake_images = generator(noise, training=True)
        if augmentations:
            # D sees real and generated images alike through random, differentiable shifts
            # and erasures, so it cannot just remember the training set (augment.py).
            replica_seed = tf.random.experimental.stateless_fold_in(
                step_seed, tf.distribute.get_replica_context().replica_id_in_sync_group)
            real_images = augment.augment(real_images, augmentations,
                                          tf.random.experimental.stateless_fold_in(replica_seed, 1))
            fake_images = augment.augment(fake_images, augmentations,
                                          tf.random.experimental.stateless_fold_in(replica_seed, 2))
        # Two D passes, not one over real and fake images together: on a CPU the single
        # larger pass measured about 10% slower (benchmarks/RESULTS.md).
        real_logits = discriminator(real_images, training=True)
        fake_logits = discriminator(fake_images, training=True)
        assert fake_images.shape[1:] == real_images.shape[1:] and real_logits.shape[-1] == 1

        discriminator_loss = models.discriminator_loss(real_logits, fake_logits, label_smoothing)
        generator_loss = models.generator_loss(fake_logits)
        regularized_discriminator_loss = discriminator_loss
        if r1_weight > 0:
            # R1: D is also pushed towards a flat verdict around the real images, which
            # keeps it from growing steep walls that G's gradients then bounce off. Only
            # every r1_interval steps ("lazy" regularization, StyleGAN2), as it costs a
            # second D pass differentiated twice.
            penalty = tf.cond(discriminator_optimizer.iterations % r1_interval == 0,
                              lambda: models.r1_penalty(discriminator, real_images), lambda: tf.constant(0.0))
            regularized_discriminator_loss += r1_weight / 2 * r1_interval * penalty
        # Each replica averages over its share of the batch and the optimizers add the
        # replicas' gradients up, so dividing by their number gives the global mean.
        # scale_loss() multiplies by the loss scale under float16 and is a no-op otherwise.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        scaled_discriminator_loss = discriminator_optimizer.scale_loss(regularized_discriminator_loss / replicas)
        scaled_generator_loss = generator_optimizer.scale_loss(generator_loss / replicas)

    # D's update: raise log D(x) + log(1 - D(G(z))), that is, lower its cross-entropy with
    # real images labelled 1 and G's labelled 0. Only D's weights move.
    discriminator_gradients = discriminator_tape.gradient(scaled_discriminator_loss,
                                                          discriminator.trainable_variables)
    # G's update: raise log D(G(z)), that is, lower the cross-entropy of D's verdict on G's
    # images labelled 1. The gradient flows back through D into G; only G's weights move.
    generator_gradients = generator_tape.gradient(scaled_generator_loss, generator.trainable_variables)
    discriminator_optimizer.apply_gradients(zip(discriminator_gradients, discriminator.trainable_variables))
    generator_optimizer.apply_gradients(zip(generator_gradients, generator.trainable_variables))

    return {
        "d_loss": discriminator_loss,
        "g_loss": generator_loss,
        "d_real": tf.reduce_mean(tf.sigmoid(real_logits)),
        "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits)),
    }


def train(dataset, epochs=EPOCHS, *, generator=None, discriminator=None, generator_optimizer=None,
          discriminator_optimizer=None, latent_dim=LATENT_DIM, generator_learning_rate=GENERATOR_LEARNING_RATE,
          discriminator_learning_rate=DISCRIMINATOR_LEARNING_RATE, beta_1=BETA_1, beta_2=BETA_2,
          label_smoothing=LABEL_SMOOTHING, augmentations=AUGMENTATIONS, r1_weight=R1_WEIGHT, r1_interval=R1_INTERVAL,
          generator_options=None, discriminator_options=None, learning_rate_half_life=LEARNING_RATE_HALF_LIFE,
          learning_rate_half_life_minutes=None, learning_rate_min_half_life=LEARNING_RATE_MIN_HALF_LIFE,
          ema_half_life_images=EMA_HALF_LIFE_IMAGES,
          ema_warmup_fraction=EMA_WARMUP_FRACTION, seed=SEED, precision=None, strategy=None, out_dir=OUT_DIR,
          max_minutes=MAX_MINUTES, verbose=1, **run_options):
    """Trains a DCGAN on `dataset`, resuming from the checkpoint in `out_dir` if there is one.

    Epochs are numbered from 0: `train(dataset, 5)` after a finished 3-epoch run in the same
    `out_dir` trains epochs 3 and 4 only. Ctrl-C or SIGTERM saves a checkpoint first.

    Args:
        dataset: a `tf.data.Dataset` of float32 image batches (batch, 28, 28, 1) in [-1, 1],
            one epoch long, such as `load_training_dataset()` returns (its batches are then
            shuffled from the run's seed, so a resumed run sees the same order).
        epochs: total number of epochs, counting those done in earlier runs.
        generator, discriminator, generator_optimizer, discriminator_optimizer: None builds
            the defaults of models.py (in the run's precision, on its devices).
        latent_dim: noise size of a generator built here.
        generator_learning_rate, discriminator_learning_rate, beta_1, beta_2: Adam's settings
            for optimizers built here.
        label_smoothing: one-sided label smoothing of D's real targets.
        augmentations: names from augment.AUGMENTATIONS for every image D sees.
        r1_weight, r1_interval: the R1 penalty on D (train_step).
        generator_options, discriminator_options: keyword arguments of
            models.make_generator_model / make_discriminator_model for models built here
            (filters, upsampling, extra_convolutions, minibatch_stddev, minibatch_group_size,
            spectral_norm, head_convolutions, head_filters, pack).
        learning_rate_half_life: epochs over which both learning rates halve, epoch by
            epoch (epoch e trains at the initial rates times 0.5 ** (e / half-life));
            None keeps them constant.
        learning_rate_half_life_minutes: the half-life in minutes of training instead (pass
            learning_rate_half_life=None with it), turned into epochs at the speed of the
            run's first epoch (controller.Controller.epochs_of_training).
        learning_rate_min_half_life: with a half-life in minutes, the fewest epochs it may
            come to (None: no floor): on a slow CPU, minutes are few epochs.
        ema_half_life_images, ema_warmup_fraction: the average of G's weights that makes
            the grids, the evaluations and generator.keras (averaging.py); a half-life of
            None uses G itself.
        seed: seeds weights, noise, data order and the fixed noise; None takes the seed of
            the run in `out_dir`, or draws one and logs it.
        precision: "float32", "mixed_bfloat16" or "mixed_float16"; None measures which one
            is fastest on this machine (precision_probe.py) and remembers it.
        strategy: a `tf.distribute.Strategy`; None trains on one device.
        out_dir: where grids, metrics, checkpoints and the final models are written.
        max_minutes: stop cleanly, saving everything, after this many minutes of training
            (None: no limit); calling again with the same `out_dir` goes on from there.
        verbose: 0 silent, 1 progress bar and a line per epoch, 2 the line only.
        **run_options: the run's bookkeeping, see `controller.Controller`: fresh,
            checkpoint_every_minutes, checkpoint_every_steps, evaluator,
            evaluate_every, evaluation_samples, remeasure_precision.

    Returns:
        The history: one dict per epoch (earlier runs in `out_dir` included), with the
        columns of metrics.csv.

    Raises:
        ValueError: bad arguments (an unknown augmentation, say), a dataset that is not
            batches of images in [-1, 1], or an `out_dir` holding a run that these settings cannot continue.
        stopping.TrainingInterrupted: SIGINT/SIGTERM arrived; a checkpoint was saved first.
        controller.TrainingDiverged: a loss became NaN or infinite.
        storage.StorageError: a result could not be written (the disk is full, say).
    """
    augmentations = augment.parse(augmentations)
    # Every option spelled out, as run_settings.json records them for a resume to match.
    generator_options = {"filters": GENERATOR_FILTERS, "upsampling": GENERATOR_UPSAMPLING,
                         "extra_convolutions": GENERATOR_EXTRA_CONVOLUTIONS, **(generator_options or {})}
    discriminator_options = {"filters": DISCRIMINATOR_FILTERS, "extra_convolutions": DISCRIMINATOR_EXTRA_CONVOLUTIONS,
                             "minibatch_stddev": MINIBATCH_STDDEV, "minibatch_group_size": MINIBATCH_GROUP_SIZE,
                             "spectral_norm": SPECTRAL_NORM, "head_convolutions": DISCRIMINATOR_HEAD_CONVOLUTIONS,
                             "head_filters": DISCRIMINATOR_HEAD_FILTERS, "pack": PACK,
                             **(discriminator_options or {})}
    if (not discriminator_options["head_convolutions"]
            or discriminator_options["head_filters"] == tuple(discriminator_options["filters"])[-1]):
        # One spelling for one model: no head, or one as wide as D's last convolution,
        # records None as earlier versions did, so a resume compares models, not spellings.
        discriminator_options["head_filters"] = None
    if not discriminator_options["minibatch_stddev"] or discriminator_options["minibatch_group_size"] is None:
        # Without the minibatch feature its group size changes nothing: record the default,
        # which runs of versions that did not record it used.
        discriminator_options["minibatch_group_size"] = MINIBATCH_GROUP_SIZE
    for half_life, unit in ((learning_rate_half_life, "epochs"), (learning_rate_half_life_minutes, "minutes")):
        if half_life is not None and not half_life > 0:
            raise ValueError(f"the learning rate's half-life must be a positive number of {unit}, got {half_life}")
    if learning_rate_min_half_life is not None and not learning_rate_min_half_life > 0:
        raise ValueError(f"the learning rate's least half-life must be a positive number of epochs, got "
                         f"{learning_rate_min_half_life}")
    if learning_rate_half_life is not None and learning_rate_half_life_minutes is not None:
        raise ValueError(f"the learning rate's half-life is given twice, {learning_rate_half_life} epochs and "
                         f"{learning_rate_half_life_minutes} minutes: pass learning_rate_half_life=None with minutes")
    if r1_weight < 0 or r1_interval < 1:
        raise ValueError(f"the R1 weight must be >= 0 and its interval >= 1, got {r1_weight} and {r1_interval}")
    # The precision probe times models like these (given ones: the defaults), so that the
    # precision it picks and the time it expects are this run's.
    run = controller.Controller(train_step, dataset, epochs, out_dir=out_dir, seed=seed, precision=precision,
                                latent_dim=latent_dim, generator_options=generator_options,
                                discriminator_options=discriminator_options, strategy=strategy,
                                max_minutes=max_minutes, verbose=verbose, **run_options)
    given_generator, given_discriminator = generator, discriminator
    with run.scope():  # the run's devices and precision; weights drawn from its seed
        if generator is None:
            generator = models.make_generator_model(latent_dim, **generator_options)
        if discriminator is None:
            discriminator = models.make_discriminator_model(**discriminator_options)
        if generator_optimizer is None or discriminator_optimizer is None:
            generator_optimizer, discriminator_optimizer = models.make_optimizers(
                generator_learning_rate, discriminator_learning_rate, beta_1,
                loss_scaling=(run.precision == "mixed_float16"), beta_2=beta_2)
        # The G we show is a float32 running average of the trained G's weights: the
        # trained one wobbles from step to step as it answers D, the average does not.
        generator_average = averaging.GeneratorAverage(generator, ema_half_life_images, ema_warmup_fraction,
                                                       seed=run.seed)
    run.start(generator, discriminator, generator_optimizer, discriminator_optimizer, NUM_EXAMPLES_TO_GENERATE,
              generator_average=generator_average, label_smoothing=label_smoothing, augmentations=list(augmentations),
              r1_weight=r1_weight, r1_interval=r1_interval, learning_rate_half_life=learning_rate_half_life,
              learning_rate_half_life_minutes=learning_rate_half_life_minutes,
              learning_rate_min_half_life=learning_rate_min_half_life,
              generator_options=generator_options if given_generator is None else "a model given to train()",
              discriminator_options=(discriminator_options if given_discriminator is None
                                     else "a model given to train()"),
              ema_half_life_images=ema_half_life_images, ema_warmup_fraction=ema_warmup_fraction)
    optimizers = (generator_optimizer, discriminator_optimizer)
    initial_learning_rates = [float(optimizer.learning_rate.numpy()) for optimizer in optimizers]
    with run.catching_stop_signals():  # Ctrl-C: save a checkpoint after this step, then stop
        for epoch in run.epochs():
            half_life = learning_rate_half_life
            if learning_rate_half_life_minutes is not None:
                # A run of so many minutes falls by the minute: on a CPU twice as fast, twice
                # as many epochs to each halving. The first epoch, at the initial rates on any
                # schedule, measures the speed; None until then. On a slow CPU an hour is few
                # epochs, and a floor in epochs keeps them from being annealed too soon.
                half_life = run.epochs_of_training(learning_rate_half_life_minutes,
                                                   at_least=learning_rate_min_half_life)
            if half_life is not None:
                # Smaller steps as training goes on: late updates refine instead of wander.
                for optimizer, initial in zip(optimizers, initial_learning_rates):
                    optimizer.learning_rate = decayed_learning_rate(initial, epoch, half_life)
            for real_images in run.batches():
                # train_step on this batch: on one device, or split over several.
                results = run.step(real_images, generator, discriminator, generator_optimizer,
                                   discriminator_optimizer, run.noise_seed, label_smoothing, augmentations,
                                   r1_weight, r1_interval)
                generator_average.update(results["images"])  # average += (1 - beta) * (G - average)
                run.record(results)  # the epoch's sums; stops on NaN, a signal or the time budget
            # After each epoch: the averaged G's images of the same fixed noise, so the grids
            # show it learn; then the metrics row (and FID when due), a checkpoint, a log line.
            averaged_generator = generator_average.generator()  # G itself when not averaging
            run.save_grid(averaged_generator(run.fixed_noise, training=False))
            run.end_epoch(averaged_generator)
    # generator.keras is the averaged G; the checkpoint keeps the trained one as well.
    return run.finish(generator_average.generator(), discriminator)


def decayed_learning_rate(initial, epoch, half_life):
    """Returns the learning rate of epoch `epoch` (from 0): `initial` halved every
    `half_life` epochs, smoothly (0.5 ** (epoch / half_life)); `initial` itself when
    `half_life` is None."""
    return initial if half_life is None else initial * 0.5 ** (epoch / half_life)


def load_training_dataset(batch_size=BATCH_SIZE, data_dir=None, max_images=None, seed=SEED):
    """Loads the Fashion-MNIST training images and returns the `tf.data` pipeline over them.

    Args:
        max_images: train on the first N images only (smoke runs and tests).

    Raises:
        ValueError, FileNotFoundError: see `data.load_fashion_mnist` and `data.make_dataset`;
            also max_images outside 1..60000.
    """
    images, _ = data.load_fashion_mnist("train", data_dir)
    if max_images is not None:
        if not 1 <= max_images <= len(images):
            raise ValueError(f"--max-images must be between 1 and the {len(images)} training images, got {max_images}")
        images = images[:max_images]
    return data.make_dataset(images, batch_size, seed=seed)


def make_argument_parser():
    """Returns the command-line parser; every default is a constant at the top of this file."""
    parser = cli.make_parser("train.py", "Train a DCGAN on Fashion-MNIST. Rerunning with the same --out-dir resumes.")
    add = parser.add_argument
    add("--epochs", type=cli.bounded_int(1, MAX_EPOCHS), default=EPOCHS,
        help="total epochs, counting earlier runs in --out-dir")
    add("--batch-size", type=cli.bounded_int(1, MAX_BATCH_SIZE), default=BATCH_SIZE, help="images per step")
    add("--latent-dim", type=cli.bounded_int(1, MAX_LATENT_DIM), default=LATENT_DIM, help="noise size")
    add("--hour", action="store_true", help="train the settings of HOUR in train.py: larger models for 60 minutes "
        "(flags given as well override them; rerunning trains another hour)")
    add("--out-dir", default=OUT_DIR, help="results and checkpoints")
    add("--data-dir", default=None, help=f"directory of the four Fashion-MNIST .gz files (none: "
        f"${data.DATA_DIR_VARIABLE}, then {data.SYSTEM_DATA_DIR}, then download with Keras)")
    cli.add_seed_argument(parser, SEED, "random seed; resuming keeps the run's")
    add("--max-images", type=cli.bounded_int(1, 10**9), default=None, help="train on the first N images only")
    add("--fresh", action="store_true", help="delete earlier results in --out-dir and start over")
    add("--max-minutes", type=cli.none_or(cli.positive_float), default=MAX_MINUTES,
        help="stop cleanly after this many minutes of training, or none: no limit (the same command again goes on)")
    add("--precision", choices=devices.PRECISIONS, default=None,
        help="none: the fastest on this machine, measured once and remembered")
    add("--remeasure-precision", action="store_true", help="measure the fastest precision again")
    add("--strategy", choices=devices.STRATEGIES, default="default",
        help="mirrored: all local GPUs; multiworker: several machines via TF_CONFIG")
    add("--g-learning-rate", type=cli.positive_float, default=GENERATOR_LEARNING_RATE, help="G's Adam learning rate")
    add("--d-learning-rate", type=cli.positive_float, default=DISCRIMINATOR_LEARNING_RATE,
        help="D's Adam learning rate")
    add("--beta-1", type=cli.fraction, default=BETA_1, help="Adam's beta_1 for both")
    add("--beta-2", type=cli.fraction, default=BETA_2, help="Adam's beta_2 for both")
    add("--label-smoothing", type=cli.fraction, default=LABEL_SMOOTHING, help="one-sided, of D's real targets")
    add("--augment", type=cli.parsed_by(augment.parse), default="none",
        help=f"augment every image D sees: {', '.join(augment.AUGMENTATIONS)}, comma-separated, or none")
    add("--lr-half-life", type=cli.half_life, default=cli.HalfLife(LEARNING_RATE_HALF_LIFE, "epochs"),
        help="epochs over which both learning rates halve (as 12), or minutes of training (as 21min), or none: "
        "constant rates")
    add("--lr-min-half-life", type=cli.none_or(cli.positive_float), default=LEARNING_RATE_MIN_HALF_LIFE,
        help="with --lr-half-life in minutes: halve no faster than every N epochs, or none: no floor")
    add("--r1-weight", type=cli.non_negative_float, default=R1_WEIGHT,
        help="weight gamma of the R1 penalty on D's gradients at real images (0: off)")
    add("--r1-interval", type=cli.bounded_int(1, 10_000), default=R1_INTERVAL, help="apply R1 every N steps")
    add("--generator-filters", type=cli.positive_ints(2, 3), default=GENERATOR_FILTERS,
        help="G's channels at 7x7 and at 14x14, as A,B, or A,B,C for a layer at 28x28 too")
    add("--discriminator-filters", type=cli.positive_int_pair, default=DISCRIMINATOR_FILTERS,
        help="D's channels at 14x14 and at 7x7, as A,B")
    add("--generator-upsampling", choices=models.UPSAMPLINGS, default=GENERATOR_UPSAMPLING,
        help="how G doubles the image size: transposed convolution, or resize then convolve")
    add("--generator-extra-convolutions", type=cli.bounded_int(0, 8), default=GENERATOR_EXTRA_CONVOLUTIONS,
        help="3x3 convolutions G adds at 7x7 and at 14x14 each")
    add("--discriminator-extra-convolutions", type=cli.bounded_int(0, 8), default=DISCRIMINATOR_EXTRA_CONVOLUTIONS,
        help="3x3 convolutions D adds at 14x14 and at 7x7 each")
    add("--minibatch-stddev", action=argparse.BooleanOptionalAction, default=MINIBATCH_STDDEV,
        help="D also sees how much the images of its batch differ")
    add("--minibatch-group-size", type=cli.bounded_int(1, MAX_BATCH_SIZE), default=MINIBATCH_GROUP_SIZE,
        help="images per group of that feature (the largest size up to this that divides the batch)")
    add("--pack", type=cli.bounded_int(1, 64), default=PACK,
        help="images D judges together as one input, all real or all generated (PacGAN); 1: one at a time")
    add("--discriminator-head-convolutions", type=cli.bounded_int(0, 8), default=DISCRIMINATOR_HEAD_CONVOLUTIONS,
        help="3x3 convolutions D adds at 7x7 after the minibatch feature")
    add("--discriminator-head-filters", type=cli.bounded_int(1, 4096), default=DISCRIMINATOR_HEAD_FILTERS,
        help="channels of those convolutions")
    add("--spectral-norm", action=argparse.BooleanOptionalAction, default=SPECTRAL_NORM,
        help="spectral normalization of D's weights")
    add("--ema-half-life", type=cli.positive_float, default=EMA_HALF_LIFE_IMAGES,
        help="half-life in images of the average of G's weights that is shown and saved")
    add("--ema-warmup", type=cli.fraction, default=EMA_WARMUP_FRACTION,
        help="the half-life is at most this fraction of the images seen so far (0: no warm-up)")
    add("--no-ema", action="store_true", help="show and save the trained G itself, not an average")
    add("--checkpoint-every-steps", type=cli.bounded_int(0, 10**9), default=0,
        help="also save a checkpoint every N steps (0: off)")
    add("--checkpoint-every-minutes", type=cli.non_negative_float, default=CHECKPOINT_EVERY_MINUTES,
        help="also save a checkpoint every M minutes (0: off)")
    add("--eval-every", type=cli.bounded_int(0, MAX_EPOCHS), default=0,
        help="measure FID, precision and recall every N epochs (evaluate.py; 0: off)")
    add("--eval-samples", type=cli.bounded_int(100, 100_000), default=EVALUATION_SAMPLES,
        help="generated images per evaluation")
    add("--deterministic", action="store_true", help="bit-identical results for the same --seed (slower)")
    add("--quiet", action="store_true", help="no progress bar, only a line per epoch")
    return parser


def parse_arguments(argv=None):
    """Returns the parsed command line: `--hour` turns HOUR into the defaults, so that flags
    given as well still win. Exits with code 2 on a bad flag (argparse)."""
    parser = make_argument_parser()
    args = parser.parse_args(argv)
    if args.hour:
        parser.set_defaults(**HOUR)
        args = parser.parse_args(argv)
    return args


def main(argv=None):
    """Runs training from the command line; returns the process exit code."""
    args = parse_arguments(argv)
    try:
        if args.deterministic:
            if args.seed is None:
                raise ValueError("--deterministic needs --seed")
            tf.config.experimental.enable_op_determinism()
        strategy = devices.make_strategy(args.strategy)
        dataset = load_training_dataset(args.batch_size, args.data_dir, args.max_images, args.seed)
        evaluator = None
        if args.eval_every:
            import evaluate  # only when asked for: it loads the classifier and the test images

            evaluator = evaluate.Evaluator(data_dir=args.data_dir)
        train(dataset, args.epochs, latent_dim=args.latent_dim, generator_learning_rate=args.g_learning_rate,
              discriminator_learning_rate=args.d_learning_rate, beta_1=args.beta_1, beta_2=args.beta_2,
              label_smoothing=args.label_smoothing, augmentations=args.augment, r1_weight=args.r1_weight,
              r1_interval=args.r1_interval, learning_rate_half_life=args.lr_half_life.epochs,
              learning_rate_half_life_minutes=args.lr_half_life.minutes,
              learning_rate_min_half_life=args.lr_min_half_life,
              generator_options=dict(filters=args.generator_filters, upsampling=args.generator_upsampling,
                                     extra_convolutions=args.generator_extra_convolutions),
              discriminator_options=dict(filters=args.discriminator_filters,
                                         extra_convolutions=args.discriminator_extra_convolutions,
                                         minibatch_stddev=args.minibatch_stddev,
                                         minibatch_group_size=args.minibatch_group_size,
                                         spectral_norm=args.spectral_norm,
                                         head_convolutions=args.discriminator_head_convolutions,
                                         head_filters=args.discriminator_head_filters, pack=args.pack),
              ema_half_life_images=None if args.no_ema else args.ema_half_life, ema_warmup_fraction=args.ema_warmup,
              seed=args.seed, precision=args.precision, strategy=strategy,
              out_dir=args.out_dir, verbose=2 if args.quiet else 1, fresh=args.fresh, max_minutes=args.max_minutes,
              checkpoint_every_minutes=args.checkpoint_every_minutes,
              checkpoint_every_steps=args.checkpoint_every_steps, evaluator=evaluator,
              evaluate_every=args.eval_every, evaluation_samples=args.eval_samples,
              remeasure_precision=args.remeasure_precision)
    except (ValueError, FileNotFoundError, stopping.TrainingInterrupted, controller.TrainingDiverged,
            storage.StorageError) as error:
        return cli.report("train.py", error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
