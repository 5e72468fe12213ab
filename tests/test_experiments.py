"""Smoke tests: every registered experiment runs at tiny settings, writes its records, and its
headline figure is a finite number in the range the quantity can take.
(Full targets are measured by running the configs; see benchmarks/RESULTS.md.)"""

import json
import math

import pytest

from jaxdyn import experiments
from jaxdyn.cli import main

# The quickstart's sizes, and its solve (test_cli reuses both): fixed Euler steps and the direct
# adjoint, since a smoke is not about adaptivity or the adjoint, and they trace and compile ~40%
# less than Dopri5 through the checkpointed adjoint.
QUICKSTART_SIZES = ["data.num_points=100", "data.t1=5.0", "model.width=8", "train.batch_size=8",
                    "train.steps=20", "train.chunk=10"]  # fmt: skip
QUICKSTART_EULER = ["solve.solver=euler", "solve.rtol=null", "solve.atol=null", "solve.dt0=0.1",
                    "solve.adjoint=direct"]  # fmt: skip
TINY = {
    "quickstart": [*QUICKSTART_SIZES, *QUICKSTART_EULER],
    "deq_digits": ["model.width=16", "train.steps=20", "train.chunk=10",
                   "train.batch_size=32"],
    "ridge_tuning": ["train.steps=4", "train.chunk=2", "grid_points=5",
                     "sweep_tolerances=[1e-2,1e-6]"],  # fmt: skip
    # one real image per class in train and validation: both have the distilled set's shape
    "distillation": ["train.steps=4", "train.chunk=2", "test_fraction=0.99",
                     "validation_fraction=0.005", "l2_grid=[1e-2]"],  # fmt: skip
    # 719 train and 719 validation samples: one inner fit for both splits
    "reweighting": ["train.steps=4", "train.chunk=2", "validation_fraction=0.4"],
    "energy_sensitivity": ["system.num_particles=16", "minimise.solver=gradient_descent",
                           "minimise.step_size=0.2", "minimise.tol=1e-12",
                           "sensitivity.timing_repeats=1", "sensitivity.dense_check=false"],
    "logistic_tuning": ["train.steps=3", "train.chunk=3", "monotone_steps=2", "inner_tol=1e-6",
                        "grid_points=3"],
    "fractional_hurst": ["data.num_steps=10", "data.num_paths=4", "data.fine_factor=2",
                         "model.num_k=3", "var_error.ks=[2]", "var_error.num_times=10",
                         "train.steps=4", "train.chunk=2"],
    # ItalyPowerDemand loads in ~0.05 s (BasicMotions ~1.3 s); 6 steps per series
    "irregular_classification": ["data.datasets=[ItalyPowerDemand]", "data.max_length=6",
                                 "data.missing_rates=[0.0,0.5]", "num_seeds=1",
                                 "model.hidden=4", "model.width=4", "model.eval_samples=1",
                                 "train.steps=2", "train.chunk=2",
                                 "model.models=[gsde]"],  # GRU-Δt: tests/test_stable_sde.py
    "sde_fit": ["data.num_paths=16", "data.horizon=1.0", "data.fine_factor=2", "data.solver=euler",
                "model.width=8", "model.depth=1", "evaluation.times=[1.0]",
                "evaluation.num_replicates=1", "evaluation.grid_points=11", "train.steps=2",
                "train.chunk=2", "train.batch_size=4"],
    "latent_sde_sine": ["data.num_test=10", "data.num_validation=10", "model.latent=1",
                        "model.context=2",
                        "model.hidden=4", "model.width=8", "model.depth=1", "model.dt0=0.1",
                        "model.n_samples=2", "evaluation.eval_samples=4",
                        "evaluation.grid_points=11", "evaluation.plot_paths=2", "train.steps=2",
                        "train.chunk=2"],
    "latent_sde_lorenz": ["data.num_train=8", "data.num_test=2", "data.num_times=6",
                          "data.horizon=0.1", "data.sim_dt=0.01", "model.latent=2",
                          "model.context=2", "model.hidden=4", "model.width=8",
                          "model.depth=1", "model.dt0=0.02", "train.steps=2", "train.chunk=2",
                          "train.batch_size=4", "evaluation.eval_samples=2",
                          "evaluation.plot_series=1", "evaluation.plot_paths=2"],
    # 16 trials: `predict` maps batches of 16, so one batch and no remainder (one program)
    "langevin_flow": ["data.num_trials=16", "data.num_neurons=10", "data.num_bins=20",
                      "num_seeds=1", "model.langevin_flow.units=4", "model.langevin_flow.inputs=2",
                      "model.langevin_flow.encoder_hidden=8", "model.langevin_flow.decoder_width=8",
                      "model.models=[langevin_flow]",  # seq_vae, smoothing_glm: own tests
                      "model.eval_samples=2", "train.steps=2", "train.chunk=2",
                      "train.batch_size=4"],
    # the pendulum only (it exercises odeint and the true modes; sines share every program);
    # KoVAE only (the baseline's loss and sampling: tests/test_sysid_koopman.py)
    "koopman_vae": ["data.datasets=[pendulum]", "data.num_series=40", "num_seeds=1",
                    "model.models=[kovae]",
                    "model.kovae.latent=2", "model.kovae.hidden=4", "model.gru_vae.hidden=4",
                    "evaluation.discriminative_steps=2", "evaluation.predictive_steps=2",
                    "evaluation.batch_size=8", "evaluation.eigen_samples=4",
                    "evaluation.plot_series=2", "selection.discriminative_steps=2",
                    "model.kovae.kl_weights=[0.007]", "model.kovae.prediction_weights=[0.01,1.0]",
                    "train.steps=4", "train.chunk=2",
                    "train.batch_size=8"],
    "digits_generation": ["model.width=16", "model.depth=1", "train.steps=2", "train.chunk=2",
                          "train.batch_size=16", "evaluation.samples_per_class=40",
                          "evaluation.grid_samples=2", "evaluation.nll_images=4",
                          "evaluation.validation_images=4",
                          "evaluation.dequantization_draws=2", "evaluation.hutchinson_images=4",
                          "evaluation.floor_repeats=1", "sampling.rtol=1e-3", "sampling.atol=1e-3",
                          "evaluation.rtol=1e-3", "evaluation.atol=1e-3",
                          "sampling.chunk=40"],  # one solve per class: half the calls of 20
    "ode_sde_gap": ["data.datasets=[blobs]", "regulariser.weights=[0.0]", "model.width=8",
                    "model.depth=1", "train.steps=2", "train.chunk=2", "train.batch_size=16",
                    "regulariser.points=8", "regulariser.boundary_points=2",
                    "sampling.num_samples=100", "sampling.sde_steps=10", "sde.t_min=0.05",
                    "sde.horizon=1", "sampling.ode_rtol=1e-3", "sampling.ode_atol=1e-3",
                    "metric.bins=16"],
    "generative_toy2d": ["datasets=[checkerboard]", "families=[linear]", "model.width=8",
                         "model.depth=1", "model.time_frequencies=2", "train.steps=2",
                         "train.chunk=2", "train.batch_size=16", "evaluation.num_samples=40",
                         "evaluation.num_nll=8", "evaluation.num_trajectories=2",
                         "evaluation.plot_points=40", "evaluation.rtol=1e-3",
                         "evaluation.atol=1e-3", "evaluation.num_validation=8"],
    "nfe_quality": ["datasets=[eight_gaussians]", "model.width=8", "model.depth=1",
                    "model.time_frequencies=2", "train.steps=2", "train.chunk=2",
                    "train.batch_size=16", "evaluation.num_samples=40", "evaluation.num_nll=8",
                    "evaluation.tolerances=[1e-3]", "evaluation.step_counts=[2]",
                    "evaluation.fixed_solvers=[rk4]", "evaluation.reference_steps=2",
                    "evaluation.reference_tol=1e-3"],
    "pde_find_burgers": ["data.num_x=64", "data.num_t=21", "data.t1=4.0",
                         "noise_levels=[0.0,0.05]", "num_noise_seeds=1",
                         "validation.pointwise_thresholds=[2.0]",
                         "validation.weak_thresholds=[0.05]", "validation.alphas=[1e-5]"],
    # validation as long as the data: their solves and eager ops share each program
    "sindy_lorenz": ["data.t1=2.0", "noise_levels=[0.05]", "num_noise_seeds=1",
                     "weak.num_domains=50", "validation.t1=2.0", "validation.thresholds=[0.1]",
                     "validation.num_domains=[50]", "validation.half_width_fractions=[0.05]"],
    # 3 time units: one lobe switch; PyDMD's comparison runs (its agreement: test_sysid_dmd)
    "havok_lorenz": ["data.num_samples=3000", "model.delays=30", "model.rank=5",
                     "figure_span=3.0"],
    # Euler steps through the direct adjoint (as the quickstart's smoke); L-BFGS kept (2 steps)
    "ude_lotka_volterra": ["num_seeds=1", "data.num_times=11", "data.forecast_t1=4.0",
                           "data.forecast_points=11", "model.width=4", "model.depth=1",
                           *QUICKSTART_EULER, "train.steps=4", "train.chunk=2", "lbfgs.steps=2",
                           "lbfgs.chunk=2", "regression.thresholds=[0.1,0.3]",
                           "regression.num_points=11", "regression.refit_steps=2"],
    # 3 time units: modes 1 and 2 cross s/2; gradient descent at a 10x larger step
    # p = 11: both accuracies reach 99% within 4000 steps (train ~1000, test ~3000 at seed 0)
    "grokking_modular": ["data.p=11", "train.hidden=40", "train.steps=4000", "train.chunk=500",
                         "ntk_inputs=16"],
    # one grid point a method, 10 steps a task, a 64-8-10 network: the three methods end to end
    "continual_digits": ["train.steps_per_task=10", "network.hidden=8", "network.layers=1",
                         "sgd.learning_rates=[0.1]", "ewc.learning_rates=[0.1]",
                         "ewc.strengths=[10.0]", "classp.learning_rates=[0.1]",
                         "classp.thresholds=[0.001]", "classp.powers=[2.0]"],
    "xor_grokking": ["data.dim=400", "data.num_train=20", "data.num_test=200", "train.steps=30",
                     "network.width=10"],
    # two fits (α = 1, and rank 1 for the connectivity table) of 20 units on 40 points; η = 2N
    # (40 N diverges at P/D = 5: GD is stable below η ≈ 3.8 N there)
    "lazy_rich": ["data.inputs=8", "data.train=40", "data.test=20", "train.hidden=20",
                  "train.steps=100", "train.chunk=50", "alphas=[1.0]", "connectivity.ranks=[1]",
                  "ntk_inputs=8", "train.learning_rate=40.0"],
    # the method (Fourier features and causal weights), 20 steps at 4 units: the loop (fit
    # between weight updates, causal weights, annealing) end to end; ETDRK4 on 32 points
    "pinn_advection": ["variants=[all]", "network.width=4", "network.depth=1",
                       "network.fourier_features=2", "train.steps=20", "train.update_every=10",
                       "train.batch=32", "train.initial_points=8", "causal.chunks=4",
                       "eval.nt=3", "eval.nx=8"],
    "pinn_allen_cahn": ["variants=[all]", "network.width=4", "network.depth=1",
                        "network.fourier_features=2", "train.steps=20", "train.update_every=10",
                        "train.batch=32", "train.initial_points=8", "causal.chunks=4",
                        "reference_points=32", "reference_dt0=0.05", "eval.nt=3",
                        "eval.nx=8"],
    # a coarse Burgers reference, networks and trainings of a few steps, one threshold; the
    # oscillator at 5 samples (two thirds of the smoke's compiles, but its training, selection
    # and figure run nowhere else in the suite)
    "operator_discovery": ["burgers.data.num_x=32", "burgers.data.dt0=0.025",
                           "burgers.model.width=8", "burgers.model.depth=1",
                           "burgers.model.modes=2", "burgers.model.hidden_width=4",
                           "burgers.model.hidden_depth=1", "burgers.train.steps=2",
                           "burgers.train.chunk=2", "burgers.train.num_collocation=16",
                           "burgers.regression.thresholds=[0.1]", "burgers.regression.num_t=3",
                           "burgers.regression.num_x=8", "oscillator.data.t1=2.0",
                           "oscillator.data.num_times=5", "oscillator.model.width=4",
                           "oscillator.model.depth=1", "oscillator.train.stage_steps=0",
                           "oscillator.train.steps=2", "oscillator.train.chunk=2",
                           "oscillator.regression.thresholds=[0.1]",
                           "oscillator.regression.num_t=5", "oscillator.refit.steps=0"],
    "saxe_deep_linear": ["flow.t1=3.0", "flow.num_times=301", "learning_rate=1e-2"],
    # N = 40, two draws, the three headline loads as the sweep; tsit5 compiles faster
    "generalization_dynamics": ["size=40", "draws=2", "sweep.alphas=[0.5,1.0,2.0]",
                                "sweep.draws=1", "times.num=101", "quadrature_nodes=128",
                                "flow.num_times=5", "flow.solver=tsit5"],
    # small problems, two step sizes, tsit5 (compiles faster than dopri8), a short
    # counterexample (the cycle sets in by ~100 steps)
    "acceleration_ode": ["steps=[1e-1,1e-2]", "solver=tsit5", "rtol=1e-6", "atol=1e-9",
                         "quadratic.dim=4", "logistic.num_samples=20",
                         "logistic.dim=3", "rates.num_points=20", "counterexample.num_steps=300",
                         "counterexample.halvings=1", "counterexample.ode_t1=50.0"],
    "learned_closure": ["physics.fine_n=32", "physics.coarse_n=16", "physics.spinup_steps=0",
                        "data.num_train=2", "data.num_val=1", "data.num_test=1",
                        "data.train_steps=8", "closure.width=2", "closure.depth=2",
                        "closure.kernel_size=3", "apriori.steps=4", "apriori.chunk=4",
                        "aposteriori.steps=2", "aposteriori.chunk=2",
                        "aposteriori.rollout_steps=2", "classical.coefficients=[0.1]",
                        "eval.long_steps=20", "eval.burn_in=5", "eval.short_steps=4",
                        "eval.short_starts=2"],
    "edge_of_stability": ["num_samples=100", "network.width=16", "train.steps=40",
                          "train.chunk=10", "window_start=20", "window_end=40",
                          "lanczos_steps=5"],  # fmt: skip
    "sgd_stability": ["num_train=64", "num_test=32", "batch_sizes=[64,8]", "network.width=8",
                      "train.steps=20", "train.chunk=10", "curvature.lanczos_steps=5",
                      "curvature.trace_probes=4"],
    # two small η that cannot diverge (the configured η = 14 oscillates near the edge)
    "benign_oscillation": ["data.dim=10", "data.num_train=20", "data.num_test=20",
                           "train.batch_size=5", "train.steps=20", "train.chunk=10",
                           "learning_rates=[0.5,1.0]"],
    # one α (the rich one): GD and one SGD; the lazy/rich contrast needs the full run
    "sgd_noise_regimes": ["num_train=64", "num_test=32", "alphas=[0.1]", "batch_sizes=[8]",
                          "network.width=8", "train.steps=10", "train.chunk=10"],
    # ERNODE alone, two seeds (a spread): each regulariser is a training program of its own
    # (~3 s); the summary's choice of the best: test_solver_regularisation_picks_on_validation
    "solver_regularisation": ["data.num_points=100", "data.t1=5.0", "model.width=8",
                              "train.batch_size=8", "train.steps=2", "train.chunk=2",
                              "num_seeds=2", "regularisation.kinds=[error]",
                              "regularisation.weights.error=[0.01]"],
    # ERNODE, two seeds (the choice and the ratio run end to end in the SDE task's smoke)
    "solver_regularisation_digits": ["model.dim=4", "model.width=8", "train.batch_size=16",
                                     "train.steps=2", "train.chunk=2", "num_seeds=2",
                                     "regularisation.kinds=[error]",
                                     "regularisation.weights.error=[0.6]"],
    # ERNODE on the SDE and without, two seeds, 40 paths over [0, 1]: the training of a
    # NeuralSDE through Regularizer(kind="error"), and the validated choice, end to end
    "solver_regularisation_sde": ["data.num_paths=40", "data.validation_paths=5",
                                  "data.test_paths=5", "data.horizon=1.0", "solve.span=0.5",
                                  "evaluation.times=[1.0]", "model.width=8", "model.depth=1",
                                  "train.steps=2", "train.chunk=2", "train.batch_size=4",
                                  "num_seeds=2", "regularisation.weights.error=[0.1]"],
}  # fmt: skip

# The headline figures of each summary.json (a path into the summary, low, high): finite and
# in the range the quantity can take at the tiny settings (a 2-step fit still meets it):
# accuracies in [0, 1], errors >= 0, co-bps <= 1 (bits per spike gained over a flat rate; a
# barely trained model is slightly negative), drops in accuracy points.
HEADLINES = {
    "quickstart": [(("rel_l2_error",), 0.0, 5.0), (("test_rel_l2_error",), 0.0, 5.0)],
    "deq_digits": [(("test_accuracy",), 0.0, 1.0), (("mlp_test_accuracy",), 0.0, 1.0)],
    # the hypergradient's error falls with the inner solution's (a linear bound: slope 1)
    "ridge_tuning": [(("max_rel_error_vs_closed_form",), 0.0, 1.0),
                     (("sweep_error_slope",), 0.5, 1.5)],  # fmt: skip
    "distillation": [(("test_accuracy",), 0.0, 1.0)],
    "reweighting": [(("auroc_clean_vs_flipped",), 0.0, 1.0)],
    "energy_sensitivity": [(("rel_error",), 0.0, 1.0)],
    "logistic_tuning": [(("test_accuracy_tuned",), 0.0, 1.0), (("test_nll_tuned",), 0.0, 0.7)],
    "fractional_hurst": [(("max_abs_error",), 0.0, 1.0)],
    "irregular_classification": [(("average_drop_0_to_50_points", "gsde"), -100.0, 100.0),
                                 (("test_accuracy", "ItalyPowerDemand", "gsde", "0.5", "mean"),
                                  0.0, 1.0), (("best_is_last_fraction",), 0.0, 1.0)],
    "sde_fit": [(("drift_rel_l2_error",), 0.0, 10.0)],
    "latent_sde_sine": [(("coverage",), 0.0, 1.0), (("validation_coverage",), 0.0, 1.0),
                        # the exact GP band needs no training: full quality even here
                        (("exact_ou_posterior", "coverage"), 0.5, 1.0)],
    "latent_sde_lorenz": [(("test_reconstruction_rmse",), 0.0, 10.0)],
    "langevin_flow": [(("langevin_flow_co_bps",), -5.0, 1.0),
                      (("metrics", "langevin_flow", "validation_co_bps", "mean"), -5.0, 1.0)],
    # scores: |accuracy - 0.5| in [0, 0.5]; an MAE of data in [0, 1]
    "koopman_vae": [(("results", "pendulum", "kovae", "discriminative", "mean"), 0.0, 0.5),
                    (("results", "pendulum", "kovae", "predictive", "mean"), 0.0, 1.0),
                    (("spectra", "pendulum", "prior_nearest_relative_error", "mean"), 0.0,
                     math.inf)],
    "generative_toy2d": [(("main", "nll"), 1.0, 50.0), (("main", "w2"), 0.0, 100.0),
                         (("main", "validation_nll"), 1.0, 50.0)],  # fmt: skip
    "nfe_quality": [(("results", "eight_gaussians/ot", "nll"), 1.0, 50.0),
                    (("results", "eight_gaussians/ot", "reference_w2"), 0.0, 100.0)],
    "ode_sde_gap": [(("results", 0, "dsm"), 0.0, 1e3), (("results", 0, "w2_floor"), 0.0, 50.0),
                    (("results", 0, "w2_ode_sde"), 0.0, math.inf)],
    # bits/dim of the discrete images: the independent-pixel model is below log2(17) = 4.09
    "digits_generation": [(("likelihood", "bits_per_dim", "mean"), 0.0, 20.0),
                          (("likelihood", "independent_pixels", "bits_per_dim"), 0.0, 4.09),
                          (("classifier", "real_test_accuracy"), 0.9, 1.0),
                          (("w2_squared", "conditional_over_floor"), 0.0, math.inf),
                          (("diversity", "conditional", "recall"), 0.0, 1.0),
                          (("diversity", "real_train_subsets", "precision"), 0.0, 1.0)],
    "pde_find_burgers": [(("max_rel_coef_error",), 0.0, 1.0),
                         (("weak_max_rel_coef_error",), 0.0, 1.0)],
    # clean data: SINDy's coefficients within a few percent even on 2 time units
    "sindy_lorenz": [(("max_rel_coef_error",), 0.0, 0.05),
                     (("pysindy_max_abs_difference",), 0.0, 1e-6)],
    # excess kurtosis >= -2 for any distribution; ‖A + Aᵀ‖ <= 2‖A‖
    "havok_lorenz": [(("rel_l2_error",), 0.0, 1.0), (("pydmd_rel_l2_error",), 0.0, 1.0),
                     (("forcing_excess_kurtosis",), -2.0, math.inf),
                     (("a_skew_symmetry",), 0.0, 2.0), (("a_off_tridiagonal",), 0.0, 1.0)],
    # relative errors >= 0 (a dropped xy term: 1); at most the 6 degree-2 terms of 2 outputs
    "ude_lotka_volterra": [(("coef_rel_error_xy",), 0.0, 100.0), (("spurious_terms",), 0, 12),
                           (("fit_rmse_network",), 0.0, 10.0)],
    # crossings within the 4000 steps; relative changes >= 0; an IPR lies in [1/F, 1] (F = 6
    # frequencies at p = 11); the analytic solution's is 1 up to float32 rounding; Li2's stage
    # II is reached within the 4000 steps (seed 0: 500), a cosine lies in [-1, 1], energies > 0
    "grokking_modular": [(("steps_to_99_train",), 1, 4000), (("steps_to_99_test",), 1, 4000),
                         (("ntk_change_at_99_test",), 0.0, math.inf),
                         (("weight_change_at_99_test",), 0.0, math.inf),
                         (("fourier_ipr_final",), 1 / 6, 1.0),
                         (("fourier_ipr_gromov",), 1 - 1e-6, 1 + 1e-6),
                         (("li2_stage2_step",), 1, 4000), (("li2_alignment_max",), 0.5, 1.0),
                         (("li2_energy_final",), 0.0, math.inf),
                         (("li2_energy_gromov",), 0.0, math.inf)],
    # 2-class tasks (chance 0.5): every method learns them above chance even at 10 steps a
    # task (tiny: 0.84-0.93); forgetting = peak - final accuracy, <= 0.5 while the final
    # accuracies stay above chance (tiny: 0.03-0.11); a share of weights
    "continual_digits": [(("methods", m, k), lo, hi) for m in ("sgd", "ewc", "classp")
                         for k, lo, hi in (("test_average_accuracy", 0.6, 1.0),
                                           ("test_average_forgetting", -0.5, 0.5))]
                        + [(("methods", "classp", "fraction_of_weights_updated"), 0.0, 1.0)],
    # the Bayes accuracy on noisy labels is 1 − η = 0.9 at ‖μ‖ = 12.25 (clean: 1 − 1e-34)
    "xor_grokking": [(("bayes_accuracy",), 0.9 - 1e-9, 0.9 + 1e-9),
                     (("final_train_accuracy",), 0.0, 1.0), (("final_test_accuracy",), 0.0, 1.0)],
    # relative changes are >= 0; the feature alignment lies in [0, 1] by its definition
    "lazy_rich": [(("final_ntk_change", "alpha_1"), 0.0, math.inf),
                  (("final_feature_alignment", "alpha_1"), 0.0, 1.0),
                  (("per_alpha", "alpha_1", "final_weight_change"), 0.0, math.inf),
                  (("connectivity", "final_ntk_change", "rank_1"), 0.0, math.inf)],
    # relative L2 errors of barely trained networks: finite, near 1
    "pinn_advection": [(("rel_l2",), 0.0, 10.0), (("final_min_causal_weight",), 0.0, 1.0),
                       (("val_residual_all",), 0.0, math.inf)],
    "pinn_allen_cahn": [(("rel_l2",), 0.0, 10.0)],
    # relative errors >= 0; a support is kept or not (a few steps: anything finite)
    "operator_discovery": [(("burgers", "clean", "coefficient_error"), 0.0, math.inf),
                           (("burgers", "noisy", "hidden_rel_error"), 0.0, math.inf),
                           (("oscillator", "noisy", "coefficient_error"), 0.0, math.inf)],
    # the flow meets its 1e-6 target at any horizon; t½ = ln(2999)/6 = 1.334 for s = 3
    # stable runs of 20 coarse steps from the smooth small ICs (no spin-up); errors >= 0
    "learned_closure": [(("aposteriori", "steps_before_blowup"), 0, 20),
                        (("aposteriori", "apriori_rel_mse"), 0.0, 10.0),
                        (("aposteriori", "short_rel_error"), 0.0, 10.0),
                        (("classical", "short_rel_error"), 0.0, 10.0)],
    "saxe_deep_linear": [(("flow_max_rel_error",), 0.0, 1e-6), (("gd_max_rel_error",), 0.0, 1.0),
                         (("half_learning_time_flow", "mode_1"), 1.33, 1.34)],
    # relative errors >= 0; the flow meets 1e-6 at any size; the late-time MP test error peaks
    # at α = 1 (where it diverges as t → ∞; the curve is deterministic)
    "generalization_dynamics": [(("max_flow_max_rel_error",), 0.0, 1e-6),
                                (("max_finite_size_vs_mp_test",), 0.0, 1.0),
                                (("max_realised_vs_mp_test",), 0.0, 10.0),
                                (("peak_alpha_mp",), 1.0, 1.0)],
    # iterates vs ODE: first order in √s (Su, Boyd & Candès; tiny: 0.97, 0.98); a gap ratio
    # >= 0; the cycle's largest |x| from Lessard et al.'s map; the tuned heavy ball cycles
    # while Nesterov and the heavy-ball ODE converge (booleans: 1 = True)
    "acceleration_ode": [(("order_quadratic",), 0.6, 1.4), (("order_logistic",), 0.6, 1.4),
                         (("bound_ratio_max_quadratic",), 0.0, 1.0),
                         (("counterexample", "heavy_ball_final_abs_x"), 0.5, 3.0),
                         (("heavy_ball_cycles",), 1, 1), (("nesterov_converges",), 1, 1),
                         (("heavy_ball_ode_converges",), 1, 1)],
    # λ_max > 0 near a (non-degenerate) fit; far from 2/η after 40 steps, but below it
    "edge_of_stability": [(("sharpness_over_2_eta", "eta_0p1"), 0.0, 1.5),
                          (("sharpness_over_2_eta", "eta_0p2"), 0.0, 1.5),
                          (("per_learning_rate", "eta_0p1", "final_train_accuracy"), 0.0, 1.0)],
    # a Gauss–Newton-dominated Hessian near the fit: λ_max >= 0 and tr(H) >= 0; stable GD
    # keeps λ_max <= 2/η and stable SGD η tr(H)/(2B) <= 1 (1.05 allowed, as the experiment's
    # flags; tiny: 0.11, 0.17); the even/odd training set fitted above chance (tiny: 0.98)
    "sgd_stability": [(("sharpness_over_2_eta", "gd"), 0.0, 1.05),
                      (("trace_over_2b_eta", "B_8"), 0.0, 1.05),
                      (("trace_over_2_eta", "B_8"), 0.0, 100.0),
                      (("per_batch_size", "B_8", "train_accuracy"), 0.75, 1.0)],
    # accuracies in [0, 1]; a mean of squared errors >= 0; small η fits with the strong
    # feature v, in 80% of the points (tiny: training accuracy 0.9; chance 0.5), and leaves the
    # weak u near its initial γ ≈ init_std · E max of 10 normals ≈ 0.15 (tiny: 0.23; the full
    # run's η = 1: 0.15 ± 0.07)
    "benign_oscillation": [(("weak_test_accuracy", "eta_1"), 0.0, 1.0),
                           (("late_train_loss", "eta_1"), 0.0, math.inf),
                           (("per_learning_rate", "eta_1", "train_accuracy"), 0.75, 1.0),
                           (("weak_coefficient", "eta_1"), 0.0, 0.5)],
    # differences of two accuracies in [-1, 1]; the centred model starts at f = 0, loss 0.5:
    # GD fits well below it (tiny: 0.013); rich α moves the weights by O(1) of their norm
    # (tiny: 1.7; the full run's: 1.25; lazy α = 10: 0.05)
    "sgd_noise_regimes": [(("delta_test_accuracy", "alpha_0p1", "B_8"), -1.0, 1.0),
                          (("largest_noise_effect", "alpha_0p1"), 0.0, 1.0),
                          (("per_alpha", "alpha_0p1", "gd", "train_loss"), 0.0, 0.25),
                          (("weight_change_gd", "alpha_0p1"), 0.3, math.inf)],
    # dopri5 takes 6 evaluations a step plus the first; errors >= 0; a ratio of two NFEs > 0
    "solver_regularisation": [(("regularisers", "error@0.01", "test_nfe", "mean"), 7.0,
                               16384 * 6 + 1),
                              (("regularisers", "error@0.01", "validation_nfe", "mean"), 7.0,
                               16384 * 6 + 1),
                              (("regularisers", "error@0.01", "test_rel_l2", "mean"), 0.0, 10.0)],
    "solver_regularisation_digits": [(("regularisers", "error@0.6", "test_nfe", "mean"), 7.0,
                                      16384 * 6 + 1),
                                     (("regularisers", "error@0.6", "test_accuracy", "mean"), 0.0,
                                      1.0)],
    # SPaRK: 3 drift evaluations a step; W1 between marginals on [-2, 2]-ish states
    "solver_regularisation_sde": [(("regularisers", "error@0.1", "test_nfe", "mean"), 3.0,
                                   4096 * 3),
                                  (("regularisers", "none", "test_marginal_w1", "mean"), 0.0, 5.0),
                                  (("nfe_ratios", "error@0.1"), 0.0, 4096 * 3)],
}  # fmt: skip


def test_every_experiment_has_a_config_and_a_smoke_setting():
    assert sorted(TINY) == experiments.names()
    assert sorted(HEADLINES) == experiments.names()


# The quickstart's smoke is test_cli's run (`test_quickstart_smoke_writes_a_complete_run_dir`
# checks its headline figures): one quickstart training less.
@pytest.mark.parametrize("name", sorted(set(TINY) - {"quickstart"}))
def test_experiment_smoke(name, tmp_path):
    out = tmp_path / name
    assert main(["run", name, *TINY[name], "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["experiment"] == name and "target_met" in summary
    assert list(out.glob("*.png")), "an experiment writes figures"
    for path, low, high in HEADLINES[name]:
        value = summary
        for key in path:
            value = value[key]
        assert isinstance(value, int | float) and math.isfinite(value), (path, value)
        assert low <= value <= high, f"{path} = {value} outside [{low}, {high}]"


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("generative_toy2d", ["train.batch_size=null"], "train.batch_size must be a number"),
        ("generative_toy2d", ["interpolant.linear_gamma=brownian"],
         "'interpolant.t_min' must be > 0 with gamma='brownian'"),
        ("nfe_quality", ["train.batch_size=null"], "train.batch_size must be a number"),
        ("ode_sde_gap", ["sde.kind=vp", "sde.beta_max=0.05"],
         "sde.beta_max=0.05 must be >= sde.beta_min=0.1"),
        ("ode_sde_gap", ["metric.limit=4.0"], "metric.limit=4.0 must be >= regulariser.box=4.75"),
        ("digits_generation", ["evaluation.grid_samples=41"],
         "evaluation.grid_samples=41 must be <= evaluation.samples_per_class=40"),
        ("digits_generation", ["evaluation.samples_per_class=20"],
         "evaluation.samples_per_class=20 must be >= the largest test class (37)"),
        ("digits_generation", ["data.test_fraction=0.6", "evaluation.samples_per_class=200"],
         "data.test_fraction=0.6 leaves a training split smaller than the test split"),
        ("digits_generation", ["data.validation_fraction=0.001"], "rounds to no validation image"),
        ("logistic_tuning", ["grid_min=3.0"], "grid_min (3.0) must be below grid_max (3.0)"),
        ("deq_digits", ["validation_fraction=0.001"], "rounds to no validation image"),
        ("distillation", ["test_fraction=0.5", "validation_fraction=0.6"], "digits needs"),
        ("langevin_flow", ["model.langevin_flow.heads=3"], "must be divisible by"),
        ("langevin_flow", ["train.mode=min"], "train.mode must be 'max'"),
        ("ude_lotka_volterra", ["data.forecast_t1=2.0"], "must be > data.t1=3.0"),
        ("ude_lotka_volterra", ["train.batch_size=8"], "set train.batch_size=null"),
        ("ude_lotka_volterra", ["data.u0=[1.0]"], "data.u0 2"),
        ("edge_of_stability", ["window_start=40"], "window_start=40 must be < window_end=40"),
        ("edge_of_stability", ["learning_rates=[0.1,0.1]"], "learning_rates=[0.1, 0.1] repeats"),
        ("continual_digits", ["data.test_fraction=0.5", "data.validation_fraction=0.5"],
         "must be < 1: no training image would be left"),
        ("sgd_stability", ["batch_sizes=[64,100]"],
         "batch_sizes=[64, 100] must be integers in [1, num_train=64]"),
        ("sgd_stability", ["num_test=1740"], "num_train=64 + num_test=1740 must be <= 1797"),
        ("benign_oscillation", ["train.batch_size=21"],
         "train.batch_size=21 must be <= data.num_train=20"),
        ("sgd_noise_regimes", ["batch_sizes=[64]"],
         "batch_sizes=[64] must be integers in [1, num_train=64)"),
        ("sgd_noise_regimes", ["alphas=[1,1]"], "alphas=[1.0, 1.0] repeats a value"),
        ("lazy_rich", ["connectivity.ranks=[1,9]"], "each must be an integer <= data.inputs=8"),
        ("lazy_rich", ["alphas=[1.0,1.0]"], "alphas=[1.0, 1.0] repeats a value"),
        ("learned_closure", ["eval.burn_in=20"], "eval.burn_in=20 must be < eval.long_steps=20"),
        ("learned_closure", ["closure.kernel_size=4"], "closure.kernel_size=4 must be odd"),
        ("pinn_advection", ["train.batch=30"], "must be a multiple of causal.chunks=4"),
        ("pinn_allen_cahn", ["eval.nx=7"], "eval.nx=7 must divide reference_points=32"),
        ("operator_discovery", ["burgers.data.validation_time=0.5"], "a held-out time"),
        ("operator_discovery", ["burgers.data.snapshot_times=[0.1,0.5]"], "must start at 0"),
        ("operator_discovery", ["burgers.data.validation_time=0.6125"], "a multiple of"),
        ("operator_discovery", ["oscillator.regression.selection=aic"], "is not one of bic"),
        ("grokking_modular", ["ntk_inputs=200"], "ntk_inputs=200 must be <= the 109 training"),
        ("grokking_modular", ["data.train_fraction=0.001"], "leaves 0 of the 121 pairs"),
        ("xor_grokking", ["network.width=5"], "network.width=5 must be even"),
        ("xor_grokking", ["data.label_noise=0.5"], "data.label_noise=0.5 must be < 0.5"),
        ("generalization_dynamics", ["times.t_min=200.0"], "times.t_min=200.0 must be <"),
        ("acceleration_ode", ["steps=[0.1,0.1]"], "must hold at least two distinct"),
        ("irregular_classification", ["train.best_metric=validation.accuracy"],
         "lowest validation cross-entropy"),
    ],
)  # fmt: skip
def test_config_checks_exit_2_before_work(name, overrides, message, tmp_path, capsys):
    """Combinations of keys the schema cannot judge fail at load, before anything runs."""
    out = tmp_path / name
    assert main(["run", name, *TINY[name], *overrides, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "metrics.jsonl").exists() and not (out / "results.jsonl").exists()


def test_results_rows_survive_a_resume_and_a_fresh_start_clears_them(tmp_path):
    """`start_results`: a resumed experiment skips the rows it finished; a new run starts empty."""
    from jaxdyn.experiments._records import append_result, start_results

    path, done = start_results(tmp_path, ("seed",), resume=True)
    assert done == {} and not path.exists()  # resuming a run that wrote no row yet
    path, done = start_results(tmp_path, ("seed", "nfe"), resume=False)
    append_result(path, {"seed": 0, "nfe": 8, "w2": 0.5})
    append_result(path, {"seed": 1, "nfe": 8, "w2": 0.25})
    _, done = start_results(tmp_path, ("seed", "nfe"), resume=True)
    assert done == {
        (0, 8): {"seed": 0, "nfe": 8, "w2": 0.5},
        (1, 8): {"seed": 1, "nfe": 8, "w2": 0.25},
    }
    _, done = start_results(tmp_path, ("seed", "nfe"), resume=False)
    assert done == {} and path.read_text() == ""


@pytest.mark.parametrize("higher_is_better", [False, True])
def test_solver_regularisation_picks_on_validation_and_reports_on_test(higher_is_better):
    """The best (regulariser, weight) is the lowest validation NFE among those whose mean
    validation metric is within the unregularised mean ± one sample sd (on the worse side);
    its ratio is of test NFEs. A higher-is-better metric mirrors the table."""
    from omegaconf import OmegaConf

    from jaxdyn.experiments._regularisation import Task, report

    sign = -1.0 if higher_is_better else 1.0  # accuracy-like metric: -error

    def row(kind, weight, seed, val, val_nfe, test, test_nfe):
        return {"regulariser": kind, "weight": weight, "seed": seed, "train_seconds": 1.0,
                "validation_m": sign * val, "validation_nfe": val_nfe, "validation_steps": 1.0,
                "test_m": sign * test, "test_nfe": test_nfe, "test_steps": 1.0}  # fmt: skip

    # none: validation errors 0.1, 0.2, 0.3 (mean 0.2, sd 0.1): within means <= 0.3
    # (validation error, validation NFE, test error, test NFE) per seed
    table = {
        ("none", 0.0): [(0.1, 100, 0.1, 100), (0.2, 100, 0.2, 100), (0.3, 100, 0.3, 100)],
        ("error", 0.1): [(0.29, 60, 0.25, 50)] * 3,  # within; the fewest NFE on validation
        ("error", 1.0): [(0.5, 20, 0.5, 20)] * 3,  # outside: too strong a weight
        ("stiffness", 0.1): [(0.31, 10, 0.1, 10)] * 3,  # just outside on validation
        ("taylor", 0.1): [(0.2, 70, 0.2, 30)] * 3,
    }  # within; fewer NFE on test only
    rows = {(k, w, s): row(k, w, s, *v) for (k, w), values in table.items()
            for s, v in enumerate(values)}  # fmt: skip
    cfg = OmegaConf.create({"target_nfe_ratio": 0.75, "regularisation": {
        "kinds": ["none", "error", "stiffness", "taylor"],
        "weights": {"error": [0.1, 1.0], "stiffness": [0.1], "taylor": [0.1]}}})  # fmt: skip
    task = Task("toy", "m", higher_is_better, None, None, None, {})
    summary = report(cfg, task, rows, [0, 1, 2])
    assert summary["eligible_on_validation"] == ["error@0.1", "taylor@0.1"]
    assert summary["best_regulariser"] == "error@0.1"
    assert summary["nfe_ratio_best"] == pytest.approx(0.5)
    assert summary["equal_accuracy_on_test"] and summary["target_met_task"]
    assert summary["target_met"] is False and "two of three tasks" in summary["target_note"]
    assert summary["regularisers"]["none"]["validation_m"]["std"] == pytest.approx(0.1)
    assert summary["regularisers"]["error@1"]["weight"] == 1.0


@pytest.mark.parametrize("width", [16, 64])
def test_deq_digits_baseline_is_the_explicit_mlp_of_equal_size(width):
    """The baseline's claim is "of equal size": the parameters of the DEQ classifier's encoder,
    cell and decoder (`64h + h + 2h² + h + 10h + 10`), plus the bias of its second explicit
    layer (`h`)."""
    import equinox as eqx
    import jax
    from omegaconf import OmegaConf

    from jaxdyn.experiments.deq_digits import DEQClassifier, MLPClassifier

    m = OmegaConf.create({"width": width, "solver": "anderson", "tol": 1e-4, "max_steps": 50,
                          "contraction": 0.9})  # fmt: skip

    def count(model):
        return sum(a.size for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))

    expected = 64 * width + width + 2 * width**2 + width + 10 * width + 10
    assert count(DEQClassifier(m, key=jax.random.key(0))) == expected
    assert count(MLPClassifier(m, key=jax.random.key(0))) == expected + width


def test_langevin_flow_glm_baseline_chooses_its_kernel_on_validation(tmp_path):
    """The smoothing + GLM baseline's kernel width is the candidate with the best validation
    co-bps (GLMs on the train trials), and the test figures use that width."""
    out = tmp_path / "glm"
    tiny = [o for o in TINY["langevin_flow"] if not o.startswith("model.models=")]
    argv = ["run", "langevin_flow", *tiny, "model.models=[smoothing_glm]",
            "model.smoothing_glm.kernel_sd_bins=[1.0,2.0]", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    row = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert row["kernel_sd_bins"] in (1.0, 2.0) and math.isfinite(row["validation_co_bps"])
    assert math.isfinite(row["co_bps"])


def test_seeds_of_a_multi_seed_experiment_must_not_overlap(tmp_path, monkeypatch):
    """`--seeds` with an experiment that runs `num_seeds` seeds itself: seeds closer than
    `num_seeds` would share seeds (refused, before any work); farther apart, each run is an
    independent repeat of the protocol."""
    from jaxdyn.config import ConfigError

    root = __import__("pathlib").Path(__file__).resolve().parent.parent
    experiment, cfg = experiments.load(root / "configs" / "solver_regularisation_digits.yaml", [])
    with pytest.raises(ConfigError, match="overlap"):
        experiments.execute_seeds(experiment, cfg, [0, 2], out=tmp_path / "a")
    assert not (tmp_path / "a").exists()
    # seeds num_seeds apart (or one seed) are accepted: each run's own seeds, nothing run here
    from jaxdyn.experiments import _runner

    ran = []
    monkeypatch.setattr(_runner, "_run_seeds", lambda exp, cfg, seeds, out: ran.append(seeds) or {})
    for seeds in ([0, 3, 6], [4]):
        experiments.execute_seeds(experiment, cfg, seeds, out=tmp_path / f"s{seeds[0]}")
    assert ran == [[0, 3, 6], [4]]
