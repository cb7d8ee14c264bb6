from optuna_spikenas.cli import main

raise SystemExit(main())
