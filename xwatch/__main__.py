from xwatch.cli import main

if __name__ == "__main__":  # not when a process of ``xwatch backtest --jobs`` imports it
    raise SystemExit(main())
