"""Training and backtest throughput of both DQN variants on the CPU, beside a naive loop.

    .venv/bin/python bench/training.py [--threads 2] [--quick]

For each variant it prints, measured in the same run:

- vectorised training: env steps/s with learning (the project's default config: many envs, large
  batches), and the replay ratio achieved (sampled transitions per env step);
- naive training: one env, one act (batch 1) and one batch-32 update per env step (replay ratio 32);
- vectorised backtest: greedy decisions/s (1,024 envs, account features, no learning), and a naive
  backtest (one env, one forward per decision);
- ``--configs``: training throughput of the platform's default configuration (fee-aware "risk" reward,
  portfolio accounting) beside the one before it (the reference reward, unit accounting), and of each
  robust-agent and turnover option on top of the default (served policies per second too: an ensemble
  of K networks trains K networks per policy).

Data: the real klines of ../shared/data/binance_spot_1h when present (2021), synthetic otherwise.
The machine is shared: the load average is printed beside the figures, and every figure is also
given per CPU-second of this process (robust to other load; with 2 threads it counts both).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from adapters.kline_files import read_kline_folder
from models.agent import DqnAgent
from models.config import AgentConfig, EnvConfig
from models.env import VectorTradingEnv
from models.options import apply_options
from models.replay import IndexReplayBuffer
from models.settings import DEFAULT_SYMBOLS
from models.synthetic import START_MS, synthetic_klines
from models.time_range import TimeRange
from pipelines.dataset import MarketDataset, build_dataset
from pipelines.train import default_configs, train_agent

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance_spot_1h"
YEAR_2021 = TimeRange(1_609_459_200_000, 1_640_995_200_000, "2021-01-01:2022-01-01")


def load_dataset() -> tuple[MarketDataset, TimeRange, str]:
    if (SHARED / "BTCUSDT.csv").exists():
        return (
            build_dataset(read_kline_folder(SHARED, DEFAULT_SYMBOLS), YEAR_2021),
            YEAR_2021,
            f"real klines ({SHARED})",
        )
    hours = 24 * 365
    synthetic = TimeRange(START_MS, START_MS + hours * 3_600_000, "synthetic year")
    return build_dataset(synthetic_klines(hours + 48), synthetic), synthetic, "synthetic klines"


class Clock:
    """Wall time and this process's CPU time (the CPU figure is robust to other load on the machine)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def rates(self, count: float) -> tuple[float, float]:
        """(per wall second, per CPU second)."""
        return count / self.wall, count / max(self.cpu, 1e-9)


def vectorised_training(dataset: MarketDataset, train: TimeRange, variant: str, steps: int) -> dict[str, float]:
    agent_config, env_config, train_config = default_configs(variant, seed=0, device="cpu")
    train_config = replace(
        train_config, total_env_steps=steps, learning_starts=agent_config.batch_size, threads=torch.get_num_threads()
    )
    with Clock() as clock:
        result = train_agent(dataset, train, agent_config, env_config, train_config)
    return {
        "steps_per_s": result.steps_per_second,
        "steps_per_cpu_s": result.env_steps / max(clock.cpu, 1e-9),
        "replay_ratio": result.updates * agent_config.batch_size / result.env_steps,
        "ratio_per_step": math.ceil(8 * train_config.n_envs / agent_config.batch_size)
        * agent_config.batch_size
        / train_config.n_envs,
        "n_envs": train_config.n_envs,
        "batch": agent_config.batch_size,
    }


def naive_training(dataset: MarketDataset, train: TimeRange, variant: str, steps: int) -> tuple[float, float]:
    """One env, act on one state, one batch-32 update per step (the reference-style loop)."""
    spec = dataset.spec
    agent = DqnAgent(AgentConfig(variant=variant), spec.window, spec.n_features, spec.n_account, "cpu", seed=0)
    rows = dataset.range_rows(train)
    states = torch.from_numpy(dataset.windows(upto=int(rows[-1])))
    env = VectorTradingEnv(
        dataset.table.close, dataset.table.tradable, EnvConfig(), 1, rows[:-1], last_row=int(rows[-1])
    )
    replay = IndexReplayBuffer(100_000, spec.n_account)
    current, account = env.reset(), env.account()
    for phase, count in (("fill", 64), ("timed", steps)):
        clock = Clock().__enter__()
        for _ in range(count):
            action = agent.act(states[current], torch.from_numpy(account))
            result = env.step(action)
            replay.add(
                current, account, action, result.rewards, result.next_rows, result.next_accounts, result.terminal
            )
            current, account = env.rows.copy(), env.account()
            agent.decay_epsilon()
            if phase == "timed":
                agent.learn(replay.gather(replay.sample(32), states))
    clock.__exit__()
    return clock.rates(steps)


def backtest(dataset: MarketDataset, variant: str, n_envs: int, steps: int) -> tuple[float, float]:
    """Greedy decisions per second: forward pass on windows + accounts, argmax, env step."""
    spec = dataset.spec
    agent = DqnAgent(AgentConfig(variant=variant), spec.window, spec.n_features, spec.n_account, "cpu", seed=0)
    states = torch.from_numpy(dataset.windows())
    starts = np.flatnonzero(dataset.has_state)[: -steps - 1]
    config = EnvConfig(accounting="portfolio", reward="log_return", fee_rate=0.001)
    env = VectorTradingEnv(dataset.table.close, dataset.table.tradable, config, n_envs, starts, auto_reset=False)
    env.reset(np.random.default_rng(0).choice(starts, n_envs), None)
    with Clock() as clock, torch.inference_mode():
        for _ in range(steps):
            q = agent.target_net(states[env.rows], torch.from_numpy(env.account()))
            env.step(q.argmax(dim=1).numpy())
    return clock.rates(n_envs * steps)


#: name → (reward, agent options of models/options.py) measured by ``--configs``.
CONFIGS: dict[str, tuple[str, dict[str, object]]] = {
    "before: reference reward, unit accounting": ("reference", {}),
    "default: risk reward, fees (portfolio)": ("risk", {}),
    "+ position step 0.5, hold 4 h": ("risk", {"position_step": 0.5, "min_hold_hours": 4}),
    "+ dueling": ("risk", {"dueling": True}),
    "+ n-step 3": ("risk", {"n_step": 3}),
    "+ ensemble of 3 (mean)": ("risk", {"ensemble_members": 3}),
    "+ early stopping (28 d, every 2,000 updates)": ("risk", {"validation_days": 28}),
}


def config_throughput(dataset: MarketDataset, train: TimeRange, variant: str, steps: int) -> None:
    """Env steps/s (of all networks) and served policies' env steps/s of every :data:`CONFIGS` entry."""
    for name, (reward, options) in CONFIGS.items():
        defaults = default_configs(variant, seed=0, device="cpu", reward=reward)
        agent_config, env_config, train_config = apply_options(defaults, options)
        train_config = replace(train_config, total_env_steps=steps, learning_starts=agent_config.batch_size,
                               threads=torch.get_num_threads())  # fmt: skip
        with Clock() as clock:
            result = train_agent(dataset, train, agent_config, env_config, train_config)
        networks = agent_config.ensemble_members
        print(
            f"{variant:6s} {name:46s} {networks * result.env_steps / clock.wall:>9,.0f} env steps/s "
            f"[{networks * result.env_steps / max(clock.cpu, 1e-9):,.0f} per CPU-s] "
            f"{result.env_steps / clock.wall:>9,.0f} per served policy ({clock.wall:.1f} s)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer steps (smoke run)")
    parser.add_argument("--configs", action="store_true", help="only the default configuration vs the options")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    scale = 0.2 if args.quick else 1.0
    dataset, train, source = load_dataset()
    print(f"data: {source}; torch {torch.__version__}, {args.threads} threads, {platform.processor() or 'cpu'}")
    print(f"load average before: {os.getloadavg()}")
    plan = {"linear": (400_000, 1_500, 400), "lstm": (60_000, 400, 100)}
    if args.configs:
        for variant, (train_steps, _, _) in plan.items():
            config_throughput(dataset, train, variant, int(train_steps * scale / 2))
        print(f"load average after: {os.getloadavg()}")
        return
    for variant, (train_steps, naive_steps, backtest_steps) in plan.items():
        vec = vectorised_training(dataset, train, variant, int(train_steps * scale))
        naive = naive_training(dataset, train, variant, int(naive_steps * scale))
        bt_vec = backtest(dataset, variant, 1024, int(backtest_steps * scale))
        bt_naive = backtest(dataset, variant, 1, int(backtest_steps * 5 * scale))
        print(
            f"{variant:6s} training: {vec['steps_per_s']:>9,.0f} env steps/s vectorised "
            f"[{vec['steps_per_cpu_s']:,.0f} per CPU-s] ({vec['n_envs']:.0f} envs, batch {vec['batch']:.0f}, "
            f"replay ratio {vec['ratio_per_step']:.0f} per step, {vec['replay_ratio']:.2f} overall) | "
            f"naive {naive[0]:>6,.0f} steps/s [{naive[1]:,.0f} per CPU-s] "
            f"(1 env, batch 32, ratio 32) | x{vec['steps_per_s'] / naive[0]:.1f}",
            flush=True,
        )
        print(
            f"{variant:6s} backtest: {bt_vec[0]:>9,.0f} decisions/s vectorised [{bt_vec[1]:,.0f} per CPU-s] "
            f"(1024 envs) | naive {bt_naive[0]:>6,.0f} decisions/s [{bt_naive[1]:,.0f} per CPU-s] (1 env) "
            f"| x{bt_vec[0] / bt_naive[0]:.1f}",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
