from medground.cli.main import run

run()
