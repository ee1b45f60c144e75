"""Local Stripe-compatible API with realistic, evolving demo data."""

from orchestration.emulator.account import PERMISSIONS
from orchestration.emulator.server import Emulator, start_emulator

__all__ = ["PERMISSIONS", "Emulator", "start_emulator"]
